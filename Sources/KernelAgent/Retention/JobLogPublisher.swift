import Foundation

/// Publishes a finished job's log to the log host (KA_CONFIG `logs: {host, dir, url}`), where it stays a year, and
/// gives the link the job's status comment shows. `ka serve` publishes each job's log when it ends; `ka prune`
/// publishes the ones not yet there (CLI jobs, or a publish that failed).
package enum JobLogPublisher {
    /// The log's link, or nil when no log host is configured. Marks the job dir (`log-published`) once it is there.
    package static func publish(_ job: JobID, workspace: Workspace, transports: any TransportProvider,
                               pipeline: PipelineConfig) async throws -> String? {
        guard let logs = pipeline.logs else { return nil }
        let link = try await PruneRemote.publishLog(job, subject: PruneRemote.subject(of: job), logs: logs, workspace: workspace, transports: transports)
        try FS.writeAtomically(Data((link + "\n").utf8), to: JobLog.directory(workspace, job).appendingPathComponent("log-published"))
        return link
    }
}
