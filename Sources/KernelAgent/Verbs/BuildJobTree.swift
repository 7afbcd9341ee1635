import Foundation

/// Where a build job's tree is: the build host it ran on and its dir there (keep/ after a failure, else source/),
/// from the notes its steps left in the job's dir.
package struct BuildJobTree: Sendable {
    let job: JobID
    let host: HostName
    let dir: String

    static func locate(_ raw: String, in ctx: VerbContext) throws -> BuildJobTree {
        let id = try JobID(raw)
        guard let job = try ctx.jobs.job(id) else { throw KAError.refusal("job \(id)", "no such job", hint: "ka jobs lists them") }
        guard job.verb == "build" else { throw KAError.refusal("job \(id)", "is a '\(job.verb)' job, not a build", hint: "ka jobs lists the builds") }
        let dir = JobLog.directory(ctx.workspace, id)
        func note(_ name: String) throws -> String? {
            let url = dir.appendingPathComponent(name)
            guard FS.exists(url) else { return nil }
            return String(decoding: try FS.read(url, display: url.path, limit: 4096), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard let hostText = try note("build-host") else {
            throw KAError.refusal("job \(id)", "never reached a build host (it ended at: \(job.detail ?? job.state.rawValue))")
        }
        let host = try HostName(hostText)
        var path = "\(HostChecks.workRoot)/source/\(id)"
        if let tree = try note("tree"), let colon = tree.firstIndex(of: ":") { path = String(tree[tree.index(after: colon)...]) }
        _ = try RemotePath(path, host: host)
        return BuildJobTree(job: id, host: host, dir: path)
    }
}
