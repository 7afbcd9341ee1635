import Foundation
import Testing
@testable import KernelAgent

/// The probe language: what parses, to what, and where bad text is refused.
@Suite struct ProbeLanguageTests {
    static let origin = ProbeOrigin(file: "fleet/fresnel.yaml", line: 27, column: 14, field: "verify.probes[0].probe")

    static func parse(_ text: String) throws(ProbeParseError) -> Probe { try ProbeParser.parse(text, origin: origin) }

    /// The error `text` is refused with.
    static func refusal(_ text: String) -> ProbeParseError? {
        do throws(ProbeParseError) { _ = try parse(text); return nil } catch { return error }
    }

    @Test func theIssuesExamplesParse() throws {
        let file = try Self.parse("file /sys/devices/system/cpu/cpufreq/policy4/cpuinfo_max_freq == 2184000")
        #expect(file.subject == .file(path: "/sys/devices/system/cpu/cpufreq/policy4/cpuinfo_max_freq"))
        #expect(file.check == .equal("2184000", negated: false))
        #expect(file.text == "file /sys/devices/system/cpu/cpufreq/policy4/cpuinfo_max_freq == 2184000")

        let dt = try Self.parse("dt /opp-table-1/opp-2184000000 exists")
        #expect(dt.subject == .deviceTree(node: "/opp-table-1/opp-2184000000", property: nil))
        #expect(dt.check == .exists)

        let cmd = try Self.parse(#"cmd [dmesg] !~ "BUG:""#)
        #expect(cmd.subject == .command(argv: ["dmesg"]))
        guard case let .matches(pattern, negated) = cmd.check else { Issue.record("not a regex check: \(cmd.check)"); return }
        #expect(pattern.source == "BUG:" && negated)
    }

    @Test func everyOperatorAndWordForm() throws {
        let cases: [(String, Probe.Check)] = [
            ("file /proc/sys/kernel/tainted != 1", .equal("1", negated: true)),
            ("file /proc/sys/kernel/tainted >= 0", .compare(.greaterOrEqual, try #require(ProbeNumber("0")))),
            ("file /proc/sys/kernel/tainted <= -1.5", .compare(.lessOrEqual, try #require(ProbeNumber("-1.5")))),
            ("file /proc/sys/kernel/tainted > 2", .compare(.greater, try #require(ProbeNumber("2")))),
            ("file /proc/sys/kernel/tainted <3", .compare(.less, try #require(ProbeNumber("3")))),
            ("file /boot/Image-fresnel-fourier missing", .missing),
        ]
        for (text, check) in cases { #expect(try Self.parse(text).check == check, "\(text)") }

        let argv = try Self.parse(#"cmd[ /usr/bin/uname , "/proc/cmd line", "a,b]", "" ]~"x\"y\\z\n\t""#)
        #expect(argv.subject == .command(argv: ["/usr/bin/uname", "/proc/cmd line", "a,b]", ""]))
        guard case let .matches(p, false) = argv.check else { Issue.record("\(argv.check)"); return }
        #expect(p.source == "x\"y\\z\n\t")

        let property = try Self.parse("dt /opp-table-1/opp-2184000000:opp-microvolt == \"1375000 1375000 1400000\"")
        #expect(property.subject == .deviceTree(node: "/opp-table-1/opp-2184000000", property: "opp-microvolt"))
        #expect(try Self.parse("dt /:#address-cells == 2").subject == .deviceTree(node: "/", property: "#address-cells"))
        // whitespace, newlines included, separates tokens; the kept text loses only the outer whitespace
        let spread = try Self.parse("  cmd [uname,\n   -r]\n  ~ ^7\\.0  \n")
        #expect(spread.subject == .command(argv: ["uname", "-r"]) && spread.text == "cmd [uname,\n   -r]\n  ~ ^7\\.0")
    }

    @Test(arguments: [
        // text, code, line, column
        ("file sys/x == 1", ProbeParseError.Code.badPath, 1, 6),
        ("file /sys/../etc/shadow == 1", .badPath, 1, 6),
        ("file /sys//x == 1", .badPath, 1, 6),
        ("file /home/kbuild/x exists", .badPath, 1, 6),
        ("file \"/sys/a\\nb\" exists", .badPath, 1, 6),
        ("file /sys/x\r\n== 1 2", .trailingJunk, 2, 6),
        ("file /sys/x\u{0}y == 1", .controlCharacter, 1, 12),
        ("cmd [] ~ x", .emptyArgv, 1, 5),
        ("cmd [ ] ~ x", .emptyArgv, 1, 5),
        ("cmd [sh, -c, reboot] ~ x", .forbiddenProgram, 1, 6),
        ("cmd [/usr/bin/python3.12, x] ~ y", .forbiddenProgram, 1, 6),
        // issue 20: an allow-list, not a deny-list: no login shell, loader, shell of any name, or wrapper
        ("cmd [/proc/self/exe, -c, id] ~ x", .forbiddenProgram, 1, 6),
        ("cmd [/lib64/ld-linux-x86-64.so.2, /bin/sh, -c, id] ~ x", .forbiddenProgram, 1, 6),
        ("cmd [/lib/ld-linux-aarch64.so.1, /usr/bin/bash, -c, id] ~ x", .forbiddenProgram, 1, 6),
        ("cmd [rbash, -c, id] ~ x", .forbiddenProgram, 1, 6),
        ("cmd [flock, /tmp/l, -c, id] ~ x", .forbiddenProgram, 1, 6),
        ("cmd [find, /, -exec, id, ;] ~ x", .forbiddenProgram, 1, 6),
        ("cmd [sed, 1e, /etc/hostname] ~ x", .forbiddenProgram, 1, 6),
        ("cmd [capsh, --, -c, id] ~ x", .forbiddenProgram, 1, 6),
        ("cmd [chrt, 1, id] ~ x", .forbiddenProgram, 1, 6),
        ("cmd [taskset, 1, id] ~ x", .forbiddenProgram, 1, 6),
        ("cmd [ssh, localhost, id] ~ x", .forbiddenProgram, 1, 6),
        ("cmd [/home/kbuild/bin/dmesg] ~ x", .forbiddenProgram, 1, 6),
        ("cmd [/tmp/uname, -r] ~ x", .forbiddenProgram, 1, 6),
        // a file operand is held to the file rule: absolute, inside the roots, never through /proc/<pid>/root
        ("cmd [cat, .ssh/id_ed25519] ~ x", .badPath, 1, 11),
        ("cmd [cat, ~/.ssh/id_ed25519] ~ x", .badPath, 1, 11),
        ("cmd [cat, /home/kbuild/.ssh/id_ed25519] ~ x", .badPath, 1, 11),
        ("cmd [cat, /proc/self/root/home/x] ~ x", .badPath, 1, 11),
        ("cmd [journalctl, --file=/home/x/j.journal] ~ x", .badPath, 1, 18),
        ("file /proc/self/root/home/kbuild/.ssh/id_ed25519 exists", .badPath, 1, 6),
        ("file /proc/1/root/root/secret exists", .badPath, 1, 6),
        ("file /proc/self/cwd/secret exists", .badPath, 1, 6),
        ("file /proc/self/fd/3 exists", .badPath, 1, 6),
        ("file /proc/1/task/1/root/etc/x exists", .badPath, 1, 6),
        ("file /proc/self/exe exists", .badPath, 1, 6),
        // C1 controls, as C0 ones
        ("file /sys/x == a\u{85}b", .controlCharacter, 1, 17),
        ("file /sys/x == a\u{9B}b", .controlCharacter, 1, 17),
        ("cmd [-rf] ~ x", .badArgv, 1, 6),
        ("cmd [dmesg ~ x", .badArgv, 1, 12),
        ("cmd dmesg ~ x", .badArgv, 1, 5),
        ("cmd [dmesg] exists", .operatorNotForSubject, 1, 13),
        ("dt /opp-table-1 == 3", .operatorNotForSubject, 1, 17),
        ("dt opp-table-1 exists", .badNode, 1, 4),
        ("dt /opp-table-1/../x exists", .badNode, 1, 17),
        ("dt /cpus:a/b exists", .badNode, 1, 10),
        ("file /sys/x =~ 2184000", .unknownOperator, 1, 13),
        ("file /sys/x = 1", .unknownOperator, 1, 13),
        ("file /sys/x exist", .unknownOperator, 1, 13),
        ("file /sys/x", .missingOperator, 1, 12),
        ("file /sys/x ==", .missingValue, 1, 15),
        ("file /sys/x >= fast", .badNumber, 1, 16),
        ("file /sys/x == 1 2", .trailingJunk, 1, 18),
        ("file /sys/x exists now", .trailingJunk, 1, 20),
        ("file /sys/x == \"open", .badString, 1, 16),
        ("file /sys/x == \"a\\qb\"", .badString, 1, 18),
        ("cmd [dmesg] ~ (a+)+$", .badRegex, 1, 15),
        ("cmd [dmesg] ~ x(a*)*", .badRegex, 1, 16),
        ("cmd [dmesg] ~ (a)\\1", .badRegex, 1, 18),
        ("cmd [dmesg] ~ [unclosed", .badRegex, 1, 15),
        ("fiel /sys/x exists", .unknownSubject, 1, 1),
        ("", .emptyProbe, 1, 1),
        ("   \n  ", .emptyProbe, 2, 3),
        ("file /sys/x\n  == 1\n  extra", .trailingJunk, 3, 3),
        ("cmd [dmesg,\n  -k] !~\n  \"open", .badString, 3, 3),
    ])
    func badTextIsRefusedAtItsLineAndColumn(_ text: String, _ code: ProbeParseError.Code, _ line: Int, _ column: Int) {
        guard let e = Self.refusal(text) else { Issue.record("'\(text)' was accepted"); return }
        #expect(e.code == code, "'\(text)': \(e)")
        #expect(e.line == line && e.column == column, "'\(text)': at \(e.line):\(e.column), expected \(line):\(column)")
        #expect(e.fileLine == 27 + line - 1)
    }

    @Test func anErrorNamesFileLineAndColumnWithACaret() throws {
        let text = "file /sys/devices/system/cpu/cpufreq/policy4/cpuinfo_max_freq =~ 2184000"
        let e = try #require(Self.refusal(text))
        let lines = e.description.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 3)
        #expect(lines.first == "fleet/fresnel.yaml:27: verify.probes[0].probe, column 63: unknown operator '=~'")
        #expect(lines.dropFirst().first.map(String.init) == "    " + text)
        #expect(lines.last.map(String.init) == "    " + String(repeating: " ", count: 62) + "^")
        #expect(e.hint?.hasPrefix("did you mean '~'?") == true, "\(e.hint ?? "")")
        #expect(e.asKAError.kind == .refusal && e.asKAError.message == e.description)
        let standalone = try #require({ () -> ProbeParseError? in
            do throws(ProbeParseError) { _ = try ProbeParser.parse("dt /x\n  ==", origin: ProbeOrigin(file: "probe")); return nil } catch { return error }
        }())
        #expect(standalone.description.hasPrefix("probe:2:3: a device-tree node has no value to compare"), "\(standalone)")
    }

    @Test func limitsAreEnforced() {
        #expect(Self.refusal("file /sys/" + String(repeating: "a", count: ProbeLimits.textBytes)).map(\.code) == .tooLong)
        #expect(Self.refusal("file /sys/" + String(repeating: "a", count: ProbeLimits.wordBytes) + " exists").map(\.code) == .tooLong)
        let args = (0...ProbeLimits.argvCount).map { "a\($0)" }.joined(separator: ",")
        #expect(Self.refusal("cmd [uname,\(args)] ~ x").map(\.code) == .badArgv)
        #expect(Self.refusal("cmd [dmesg] ~ " + String(repeating: "a", count: ProbeLimits.patternBytes + 1)).map(\.code) == .badRegex)
        #expect(Self.refusal("file /sys/x == 1\u{7f}").map(\.code) == .controlCharacter)
    }

    @Test func theRegexGuardStopsACostlyMatch() throws {
        // (a|a)*b passes the shape check (no repetition inside the repeated group) and backtracks exponentially.
        let pattern = try ProbePattern("(a|a)*b")
        let started = ContinuousClock.now
        #expect(pattern.firstMatch(in: String(repeating: "a", count: 40), budget: .milliseconds(200)) == .tooCostly)
        #expect(ContinuousClock.now - started < .seconds(5), "took \(ContinuousClock.now - started)")
        // An ordinary one matches per line and reports the line.
        let bug = try ProbePattern("^BUG:")
        #expect(bug.firstMatch(in: "ok\n[  1.0] x\nBUG: kernel NULL pointer\nmore") == .matched(line: "BUG: kernel NULL pointer"))
        #expect(bug.firstMatch(in: "ok\n[  1.0] BUG: not at the start") == .notMatched)
        // Shapes: bounded repetition of a repeated group is fine when it repeats once at most.
        #expect((try? ProbePattern("(ab+)?c")) != nil)
        #expect((try? ProbePattern("(a+){2,}")) == nil)
        #expect((try? ProbePattern("[(a+)+]x")) != nil, "inside a set, parentheses are literal")
        #expect((try? ProbePattern("\\Q(a+)+\\E")) != nil, "\\Q…\\E is literal")
    }

    @Test func numbersCompareExactlyAsIntegers() throws {
        let big = try #require(ProbeNumber("9007199254740993")), bigger = try #require(ProbeNumber("9007199254740992"))
        #expect(big.compare(to: bigger) == 1, "beyond Double's 2^53, integers still compare exactly")
        #expect(try #require(ProbeNumber("1.5")).compare(to: try #require(ProbeNumber("2"))) == -1)
        for bad in ["", "-", "1.", ".5", "+1", "1e3", "0x10", "1 "] { #expect(ProbeNumber(bad) == nil, "\(bad)") }
    }

    @Test func deviceTreeValuesReadAsText() {
        #expect(DeviceTreeValue.render([0x00, 0x14, 0xfb, 0x18, 0x00, 0x14, 0xfb, 0x18, 0x00, 0x15, 0x5c, 0xc0]) == "1375000 1375000 1400000")
        #expect(DeviceTreeValue.render([0, 0, 0, 0, 0x82, 0x2d, 0x32, 0x00]) == "0 2184000000")
        #expect(DeviceTreeValue.render(Array("pine64,pinebook-pro\u{0}rockchip,rk3399\u{0}".utf8)) == "pine64,pinebook-pro\nrockchip,rk3399")
        #expect(DeviceTreeValue.render(Array("okay\u{0}".utf8)) == "okay")
        #expect(DeviceTreeValue.render([]) == "")
        #expect(DeviceTreeValue.render([0x0a, 0x1b, 0xff]) == "0a 1b ff")
    }

    /// Issue 20, low: the shapes that hid a repeated repetition from the read-time check.
    @Test func hiddenNestedRepetitionsAreRefusedAtReadTime() {
        for pattern in [#""(?x)(a +) +""#, #""(?x)(a+)#c\n+""#, #"(a+)\Q\E+"#, #"(a+)(?#c)+"#, #""(?ix)(a+) +""#] {
            let r = Self.refusal("cmd [dmesg] ~ \(pattern)")
            #expect(r?.code == .badRegex, "\(pattern): \(String(describing: r))")
        }
        // honest patterns still read
        for pattern in [#"\Qa+b\E+"#, #"(?i)bug:"#, #"(?m)^x$"#] {
            #expect(Self.refusal("cmd [dmesg] ~ \(pattern)") == nil, "\(pattern)")
        }
    }
}
