import Foundation
import KATestSupport
import Testing
@testable import KernelAgent

/// Issue 20 §2: the box's shims against the real tools on the same DTB (the real v7.0 Pinebook Pro DTS, compiled
/// with cpp and dtc from the fixture in place). `fdt-unpack` must give the tree `dtc -I fs` reads back as the DTB
/// itself; `cpufreq-from-dt` must give each policy the highest opp-hz (kHz) of the table its CPUs use, as fdtget
/// reads them.
@Suite struct BoxShimTests {
    static let shims = TestEnv.projectRoot.appendingPathComponent("scripts/fleet-box.d/host")

    static func tool(_ argv: [String], cwd: URL? = nil) async throws -> String {
        let r = try await TestCommand.run(argv, cwd: cwd)
        try #require(r.status == 0, "\(argv.joined(separator: " ")): \(r.stderrText)")
        return r.stdoutText
    }

    /// The fixture's DTB, built in `work` (the fixture is read where it is, never copied).
    static func pinebookDTB(in work: URL) async throws -> URL {
        let fixture = try TestEnv.fixtureTree()
        let dts = fixture.appendingPathComponent(ApplyCheckTests.dts)
        _ = try await tool(["cpp", "-nostdinc", "-I", fixture.appendingPathComponent("include").path,
                            "-I", fixture.appendingPathComponent("arch/arm64/boot/dts/rockchip").path, "-undef", "-D__DTS__",
                            "-x", "assembler-with-cpp", dts.path, "-o", work.appendingPathComponent("pbp.dts.pp").path])
        _ = try await tool(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", "pbp.dtb", "pbp.dts.pp"], cwd: work)
        return work.appendingPathComponent("pbp.dtb")
    }

    @Test func fdtUnpackAndCpufreqFromDtAgreeWithDtc() async throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("ka-shims-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let dtb = try await Self.pinebookDTB(in: work)
        let base = work.appendingPathComponent("base")
        _ = try await Self.tool(["python3", Self.shims.appendingPathComponent("fdt-unpack").path, dtb.path, base.path])

        // the unpacked tree, read back by dtc, is the DTB (both sorted; the kernel's "name" files are not properties)
        let fromFS = try await Self.tool(["dtc", "-q", "-s", "-I", "fs", "-O", "dts", base.path])
        let fromDTB = try await Self.tool(["dtc", "-q", "-s", "-I", "dtb", "-O", "dts", dtb.path])
        func normal(_ dts: String) -> [String] {
            dts.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.hasPrefix("name = ") && !$0.hasPrefix("/memreserve/") && !$0.isEmpty }
        }
        let a = normal(fromFS), b = normal(fromDTB)
        #expect(a.count > 1000, "a whole board's tree: \(a.count) lines")
        #expect(a == b, "first difference: \(zip(a, b).first { $0 != $1 }.map { "\($0.0) | \($0.1)" } ?? "lengths \(a.count) vs \(b.count)")")

        // cpufreq: per policy, the max opp-hz of the table its CPUs point at, from fdtget
        let cpufreq = work.appendingPathComponent("cpufreq")
        _ = try await Self.tool(["python3", Self.shims.appendingPathComponent("cpufreq-from-dt").path, base.path, cpufreq.path])
        func fdtget(_ args: [String]) async throws -> String {
            try await Self.tool(["fdtget"] + args).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        var cpus: [(reg: Int, table: Int)] = []
        for node in try await fdtget(["-l", dtb.path, "/cpus"]).split(separator: "\n") where node.hasPrefix("cpu@") {
            let reg = Int(try await fdtget(["-t", "u", dtb.path, "/cpus/\(node)", "reg"])) ?? -1
            let table = Int(try await fdtget(["-t", "u", dtb.path, "/cpus/\(node)", "operating-points-v2"])) ?? -1
            cpus.append((reg, table))
        }
        cpus.sort { $0.reg < $1.reg }
        var maxKHz: [Int: Int] = [:]
        for node in try await fdtget(["-l", dtb.path, "/"]).split(separator: "\n") where node.hasPrefix("opp-table") {
            let phandle = Int(try await fdtget(["-t", "u", dtb.path, "/\(node)", "phandle"])) ?? -1
            for opp in try await fdtget(["-l", dtb.path, "/\(node)"]).split(separator: "\n") {
                let cells = try await fdtget(["-t", "u", dtb.path, "/\(node)/\(opp)", "opp-hz"]).split(separator: " ").compactMap { Int($0) }
                let hz = cells.count == 2 ? cells[0] << 32 | cells[1] : (cells.first ?? 0)
                maxKHz[phandle] = max(maxKHz[phandle] ?? 0, hz / 1000)
            }
        }
        var expected: [String: Int] = [:]
        for (index, cpu) in cpus.enumerated() {
            if let khz = maxKHz[cpu.table], !cpus[..<index].contains(where: { $0.table == cpu.table }) { expected["policy\(index)"] = khz }
        }
        // rk3399: a little and a big cluster, each with its own table
        #expect(expected.keys.sorted() == ["policy0", "policy4"] && expected.values.allSatisfy { $0 >= 1_000_000 }, "\(expected)")
        for (policy, khz) in expected {
            for leaf in ["cpuinfo_max_freq", "scaling_max_freq"] {
                let shown = try String(contentsOf: cpufreq.appendingPathComponent("\(policy)/\(leaf)"), encoding: .utf8)
                #expect(shown == "\(khz)\n", "\(policy)/\(leaf): \(shown)")
            }
        }
        let made = try FileManager.default.contentsOfDirectory(atPath: cpufreq.path).sorted()
        #expect(made == expected.keys.sorted(), "\(made)")
    }
}
