import Foundation

/// Reads one probe of the probe language (grammar: fleet/README.md, "Probes"). The language is closed: what
/// the grammar does not name is an error at its line:column, never a guess, and nothing in it reaches a shell.
///
/// ```swift
/// let probe = try ProbeParser.parse("file /sys/devices/system/cpu/cpufreq/policy4/cpuinfo_max_freq == 2184000",
///                                   origin: ProbeOrigin(file: "fleet/fresnel.yaml", line: 27, field: "verify.probes[0].probe"))
/// ```
package enum ProbeParser {
    /// Parses `text`, which holds exactly one probe; whitespace (newlines included) separates its tokens.
    package static func parse(_ text: String, origin: ProbeOrigin) throws(ProbeParseError) -> Probe {
        var reader = Reader(text: text, origin: origin)
        return try reader.probe()
    }

    /// The only programs a `cmd` probe runs: read-only views of the kernel and the system, none of which runs
    /// another program, so no argument can bring a shell back (a deny-list always misses a wrapper). Given by
    /// bare name or by a path in a system bin dir.
    package static let allowedPrograms: Set<String> = [
        "dmesg", "journalctl", "uname", "lsmod", "modinfo", "cat", "head", "tail", "wc", "stat", "ls", "readlink",
        "lspci", "lsusb", "lscpu", "lsblk", "findmnt", "nproc", "free", "uptime", "hostname", "sensors", "true", "false",
    ]

    /// Programs whose operands are files: each must be an absolute path a `file` probe could read (a relative one
    /// would be read from the login's home directory).
    package static let fileOperandPrograms: Set<String> = ["cat", "head", "tail", "wc", "stat", "ls", "readlink"]

    /// The dirs a program given by path must be in.
    package static let systemBinDirs: Set<String> = ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/local/sbin"]

    /// The per-process links under /proc that lead anywhere (another root, a cwd, an open file, a program):
    /// `/proc/<pid>/root/home/…` would otherwise pass the /proc root.
    package static let procEscapes: Set<String> = ["root", "cwd", "fd", "exe", "map_files", "fdinfo"]

    /// Why `path` (absolute, already free of `.`, `..` and empty components) is not one a probe may read; nil if it is.
    package static func unreadableReason(_ path: String) -> String? {
        guard fileRoots.contains(where: { path == $0 || path.hasPrefix($0 + "/") }) else {
            return "'\(path)' is outside what a probe may read"
        }
        let parts = path.split(separator: "/")
        if parts.count >= 3, parts[0] == "proc", procEscapes.contains(String(parts[2])) {
            return "'\(path)' goes through /proc/\(parts[1])/\(parts[2]), which leads out of what a probe may read"
        }
        if parts.count >= 5, parts[0] == "proc", parts[2] == "task", procEscapes.contains(String(parts[4])) {
            return "'\(path)' goes through /proc/\(parts[1])/task/\(parts[3])/\(parts[4]), which leads out of what a probe may read"
        }
        return nil
    }

    /// Where `file` probes may read: the kernel's views and the system's own files, never a home directory.
    package static let fileRoots = ["/sys", "/proc", "/boot", "/etc", "/usr", "/lib", "/var", "/run", "/opt", "/srv"]
}

/// The recursive-descent reader over the text's Unicode scalars.
private struct Reader {
    let scalars: [Unicode.Scalar]
    let text: String
    let origin: ProbeOrigin
    var pos = 0

    init(text: String, origin: ProbeOrigin) {
        self.text = text
        self.scalars = Array(text.unicodeScalars)
        self.origin = origin
    }

    // MARK: the grammar

    mutating func probe() throws(ProbeParseError) -> Probe {
        guard text.utf8.count <= ProbeLimits.textBytes else {
            throw fail(.tooLong, at: 0, "a probe is at most \(ProbeLimits.textBytes) bytes")
        }
        for (i, s) in scalars.enumerated() where s.value < 0x20 && s != "\t" && s != "\n" && s != "\r" || (0x7f...0x9f).contains(s.value) {
            throw fail(.controlCharacter, at: i, s.value == 0 ? "NUL byte" : "control character U+\(String(s.value, radix: 16, uppercase: true))")
        }
        skipSpace()
        guard pos < scalars.count else { throw fail(.emptyProbe, at: pos, "empty probe", hint: "e.g. file /sys/… == 1, dt /node exists, cmd [prog, arg] ~ regex") }
        let subjectStart = pos
        let keyword = readLetters()
        let subject: Probe.Subject
        switch keyword {
        case "file":
            try requireSpace(after: "file")
            subject = .file(path: try filePath())
        case "dt":
            try requireSpace(after: "dt")
            subject = try deviceTreePath()
        case "cmd":
            skipSpace()
            subject = .command(argv: try argv())
        default:
            let shown = keyword.isEmpty ? String(scalars[pos]) : keyword
            throw fail(.unknownSubject, at: subjectStart, "unknown subject '\(shown)'",
                       hint: suggestion(shown, among: ["file", "dt", "cmd"]) + "a probe starts with file, dt or cmd")
        }
        let subjectEnd = pos
        skipSpace()
        guard pos < scalars.count else {
            throw fail(.missingOperator, at: pos, "expected an operator after the subject",
                       hint: "one of ==, !=, ~, !~, >=, <=, >, <, exists, missing")
        }
        if pos == subjectEnd, keyword != "cmd" {
            throw fail(.expectedSpace, at: pos, "expected a space between the subject and the operator")
        }
        let opStart = pos
        let op = try readOperator()
        switch (subject, op) {
        case (.command, .exists), (.command, .missing):
            throw fail(.operatorNotForSubject, at: opStart, "cmd has no '\(op.rawValue)'",
                       hint: "check what the command prints: cmd [prog] ~ regex")
        case (.deviceTree(_, nil), _) where op.takesValue:
            throw fail(.operatorNotForSubject, at: opStart, "a device-tree node has no value to compare",
                       hint: "name a property (dt /node:property \(op.rawValue) …) or check the node with exists / missing")
        default: break
        }
        let check: Probe.Check
        if op.takesValue {
            skipSpace()
            guard pos < scalars.count else { throw fail(.missingValue, at: pos, "expected a value after '\(op.rawValue)'") }
            let valueStart = pos
            let (value, quoted) = try word(inList: false)
            check = try makeCheck(op, value: value, at: valueStart, quoted: quoted)
        } else {
            check = op == .exists ? .exists : .missing
        }
        skipSpace()
        guard pos == scalars.count else {
            throw fail(.trailingJunk, at: pos, "unexpected text after the probe",
                       hint: "a probe is one subject, one operator and at most one value; quote a value that holds spaces")
        }
        // Only the language's own whitespace is trimmed: a bare value may end in any other space character.
        let first = scalars.firstIndex { !Self.isSpace($0) } ?? 0
        let last = scalars.lastIndex { !Self.isSpace($0) } ?? -1
        let shown = first <= last ? String(String.UnicodeScalarView(scalars[first...last])) : ""
        return Probe(subject: subject, check: check, text: shown, origin: origin)
    }

    mutating func makeCheck(_ op: Probe.Operator, value: String, at start: Int, quoted: Bool) throws(ProbeParseError) -> Probe.Check {
        guard value.utf8.count <= ProbeLimits.wordBytes else {
            throw fail(.tooLong, at: start, "a value is at most \(ProbeLimits.wordBytes) bytes")
        }
        switch op {
        case .equal, .notEqual:
            return .equal(value, negated: op == .notEqual)
        case .matches, .notMatches:
            do throws(ProbePattern.Refusal) {
                return .matches(try ProbePattern(value), negated: op == .notMatches)
            } catch {
                // a bare pattern's byte offset maps onto the text; a quoted one is shown from its quote
                let at = quoted ? start : start + value.utf8.prefix(error.offset).count(where: { $0 & 0xC0 != 0x80 })
                throw fail(.badRegex, at: min(at, scalars.count), error.message,
                           hint: "patterns are ICU regexes of at most \(ProbeLimits.patternBytes) bytes, without backreferences or nested repetition")
            }
        case .greaterOrEqual, .lessOrEqual, .greater, .less:
            guard let number = ProbeNumber(value) else {
                throw fail(.badNumber, at: start, "'\(op.rawValue)' needs a number, not '\(value)'", hint: "write digits, e.g. 2184000 or -1.5")
            }
            return .compare(op, number)
        case .exists, .missing:
            preconditionFailure("exists and missing take no value")
        }
    }

    // MARK: subjects

    mutating func filePath() throws(ProbeParseError) -> String {
        let start = pos
        guard pos < scalars.count else { throw fail(.badPath, at: pos, "expected an absolute path after 'file'") }
        let (path, _) = try word(inList: false)
        guard path.hasPrefix("/") else {
            throw fail(.badPath, at: start, "'\(path)' is not an absolute path", hint: "write the full path, e.g. /sys/devices/…")
        }
        guard path.utf8.count <= ProbeLimits.wordBytes else { throw fail(.tooLong, at: start, "a path is at most \(ProbeLimits.wordBytes) bytes") }
        guard !path.unicodeScalars.contains(where: { $0.value < 0x20 }) else {
            throw fail(.badPath, at: start, "a path may not hold a control character (\\n, \\t)")
        }
        let parts = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        if let bad = parts.first(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
            throw fail(.badPath, at: start, bad == ".." ? "a path may not hold '..'" : "a path may not hold an empty or '.' component",
                       hint: "name the file by its plain absolute path")
        }
        if let why = ProbeParser.unreadableReason(path) {
            throw fail(.badPath, at: start, why, hint: "file probes read under \(ProbeParser.fileRoots.joined(separator: ", ")), never through /proc/<pid>/{root,cwd,fd,exe}")
        }
        return path
    }

    mutating func deviceTreePath() throws(ProbeParseError) -> Probe.Subject {
        let start = pos
        guard pos < scalars.count else { throw fail(.badNode, at: pos, "expected a node path after 'dt'") }
        let (raw, _) = try word(inList: false)
        let node: Substring, property: Substring?
        if let colon = raw.firstIndex(of: ":") {
            node = raw[..<colon]; property = raw[raw.index(after: colon)...]
        } else {
            node = Substring(raw); property = nil
        }
        let hint = "a node path under /proc/device-tree such as /opp-table-1/opp-2184000000, optionally :property"
        guard node.hasPrefix("/") else { throw fail(.badNode, at: start, "'\(node)' is not an absolute node path", hint: hint) }
        guard raw.utf8.count <= ProbeLimits.wordBytes else { throw fail(.tooLong, at: start, "a node path is at most \(ProbeLimits.wordBytes) bytes") }
        if node != "/" {
            var offset = 1
            for part in node.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
                if part.isEmpty || part == "." || part == ".." || !part.unicodeScalars.allSatisfy(Self.isNodeScalar) {
                    throw fail(.badNode, at: start + offset, "'\(part)' is not a device-tree node name", hint: hint)
                }
                offset += part.unicodeScalars.count + 1
            }
        }
        if let property {
            let at = start + node.unicodeScalars.count + 1
            guard !property.isEmpty, property != ".", property != "..", !property.contains("/"),
                  property.unicodeScalars.allSatisfy({ Self.isNodeScalar($0) || $0 == "#" || $0 == "?" }) else {
                throw fail(.badNode, at: at, "'\(property)' is not a device-tree property name", hint: hint)
            }
        }
        return .deviceTree(node: String(node), property: property.map(String.init))
    }

    /// Node names: letters, digits and `,._+-@` (the devicetree spec's characters).
    static func isNodeScalar(_ s: Unicode.Scalar) -> Bool {
        s.isASCII && (NameBytes.isLower(UInt8(s.value)) || NameBytes.isUpper(UInt8(s.value)) || NameBytes.isDigit(UInt8(s.value))
                      || ",._+-@".unicodeScalars.contains(s))
    }

    mutating func argv() throws(ProbeParseError) -> [String] {
        let open = pos
        guard pos < scalars.count, scalars[pos] == "[" else {
            throw fail(.badArgv, at: pos, "expected '[' after 'cmd'", hint: "write the command as a list: cmd [dmesg] or cmd [uname, -r]")
        }
        pos += 1
        var argv: [String] = []
        skipSpace()
        if pos < scalars.count, scalars[pos] == "]" {
            throw fail(.emptyArgv, at: open, "empty command", hint: "name the program: cmd [dmesg]")
        }
        while true {
            skipSpace()
            guard pos < scalars.count else { throw fail(.badArgv, at: open, "the command's '[' is never closed") }
            let start = pos
            let (element, _) = try word(inList: true)
            if start == pos { throw fail(.badArgv, at: pos, "expected an argument, found '\(scalars[pos])'") }
            guard element.utf8.count <= ProbeLimits.wordBytes else { throw fail(.tooLong, at: start, "an argument is at most \(ProbeLimits.wordBytes) bytes") }
            if argv.isEmpty { try checkProgram(element, at: start) } else { try checkArgument(element, of: argv[0], at: start) }
            argv.append(element)
            guard argv.count <= ProbeLimits.argvCount else { throw fail(.badArgv, at: start, "a command has at most \(ProbeLimits.argvCount) arguments") }
            skipSpace()
            guard pos < scalars.count else { throw fail(.badArgv, at: open, "the command's '[' is never closed") }
            if scalars[pos] == "]" { pos += 1; return argv }
            guard scalars[pos] == "," else {
                throw fail(.badArgv, at: pos, "expected ',' or ']' in the command, found '\(scalars[pos])'",
                           hint: "separate arguments with commas; quote an argument that holds spaces or commas")
            }
            pos += 1
        }
    }

    func checkProgram(_ program: String, at start: Int) throws(ProbeParseError) {
        let allowedHint = "a probe runs one of: \(ProbeParser.allowedPrograms.sorted().joined(separator: ", "))"
        let base: String
        if program.hasPrefix("/") {
            let parts = program.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
            guard !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
                throw fail(.badArgv, at: start, "the program path may not hold an empty, '.' or '..' component")
            }
            let dir = (program as NSString).deletingLastPathComponent
            base = String(parts.last ?? "")
            guard ProbeParser.systemBinDirs.contains(dir) else {
                throw fail(.forbiddenProgram, at: start, "a probe's program path must be in a system bin dir (\(ProbeParser.systemBinDirs.sorted().joined(separator: ", "))), not \(dir)",
                           hint: "name the program by its bare name: cmd [\(base), …]")
            }
        } else {
            guard let first = program.utf8.first, first != UInt8(ascii: "-"), first != UInt8(ascii: "."),
                  program.utf8.allSatisfy({ NameBytes.pathComponent($0) }) else {
                throw fail(.badArgv, at: start, "'\(program)' is not a program name",
                           hint: "name the program (letters, digits, . _ - + ,) or give its absolute path")
            }
            base = program
        }
        guard ProbeParser.allowedPrograms.contains(base) else {
            throw fail(.forbiddenProgram, at: start, "a probe may not run '\(base)'", hint: allowedHint)
        }
    }

    /// An argument that names a path is held to the `file` probe's rule; a file operand must be absolute.
    func checkArgument(_ arg: String, of program: String, at start: Int) throws(ProbeParseError) {
        let base = program.split(separator: "/").last.map(String.init) ?? program
        var path: Substring?
        if arg.hasPrefix("/") { path = Substring(arg) }
        else if arg.hasPrefix("-"), let eq = arg.firstIndex(of: "="), arg[arg.index(after: eq)...].hasPrefix("/") { path = arg[arg.index(after: eq)...] }
        else if arg.hasPrefix("~") || arg.hasPrefix(".") || (ProbeParser.fileOperandPrograms.contains(base) && !arg.hasPrefix("-")) {
            throw fail(.badPath, at: start, "'\(arg)' is not an absolute path", hint: "name files by their absolute path, e.g. /proc/cmdline")
        }
        guard let path else { return }
        if path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
            throw fail(.badPath, at: start, "'\(path)' may not hold an empty, '.' or '..' component")
        }
        if let why = ProbeParser.unreadableReason(String(path)) {
            throw fail(.badPath, at: start, why, hint: "a probe reads under \(ProbeParser.fileRoots.joined(separator: ", "))")
        }
    }

    // MARK: tokens

    /// A bare word (up to whitespace or a quote; in a list also up to ',' or ']') or a quoted string.
    mutating func word(inList: Bool) throws(ProbeParseError) -> (String, quoted: Bool) {
        if pos < scalars.count, scalars[pos] == "\"" { return (try quoted(), true) }
        var out = String.UnicodeScalarView()
        while pos < scalars.count {
            let s = scalars[pos]
            if Self.isSpace(s) || s == "\"" || (inList && (s == "," || s == "]" || s == "[")) { break }
            out.append(s)
            pos += 1
        }
        return (String(out), false)
    }

    /// `"…"` with the escapes \" \\ \n \t; a quoted string ends on its line.
    mutating func quoted() throws(ProbeParseError) -> String {
        let open = pos
        pos += 1
        var out = String.UnicodeScalarView()
        while pos < scalars.count {
            let s = scalars[pos]
            switch s {
            case "\"":
                pos += 1
                return String(out)
            case "\\":
                guard pos + 1 < scalars.count else { break }
                switch scalars[pos + 1] {
                case "\"": out.append("\"")
                case "\\": out.append("\\")
                case "n": out.append("\n")
                case "t": out.append("\t")
                default:
                    throw fail(.badString, at: pos, "unknown escape '\\\(scalars[pos + 1])'",
                               hint: "a quoted string knows \\\" \\\\ \\n \\t; a regex without spaces can be written bare, e.g. ~ \\d+")
                }
                pos += 2
                continue
            case "\n", "\r":
                throw fail(.badString, at: open, "the quoted string is not closed on its line")
            default:
                out.append(s)
            }
            pos += 1
        }
        throw fail(.badString, at: open, "the quoted string is not closed")
    }

    mutating func readOperator() throws(ProbeParseError) -> Probe.Operator {
        let start = pos
        let letters = readLetters()
        if !letters.isEmpty {
            if let op = Probe.Operator(rawValue: letters), !op.takesValue { return op }
            throw fail(.unknownOperator, at: start, "unknown operator '\(letters)'",
                       hint: suggestion(letters, among: ["exists", "missing"]) + "one of ==, !=, ~, !~, >=, <=, >, <, exists, missing")
        }
        var symbol = String.UnicodeScalarView()
        while pos < scalars.count, "=!~<>".unicodeScalars.contains(scalars[pos]) { symbol.append(scalars[pos]); pos += 1 }
        let shown = symbol.isEmpty ? String(scalars[pos]) : String(symbol)
        guard let op = Probe.Operator(rawValue: String(symbol)), op.takesValue else {
            let near = ["=~": "~", "=": "==", "===": "==", "<>": "!=", "!": "!=", "!==": "!=", "=>": ">=", "=<": "<=", "~~": "~"][shown]
            throw fail(.unknownOperator, at: start, "unknown operator '\(shown)'",
                       hint: (near.map { "did you mean '\($0)'? " } ?? "") + "one of ==, !=, ~, !~, >=, <=, >, <, exists, missing")
        }
        return op
    }

    mutating func readLetters() -> String {
        var out = String.UnicodeScalarView()
        while pos < scalars.count, scalars[pos].isASCII, NameBytes.isLower(UInt8(scalars[pos].value)) || NameBytes.isUpper(UInt8(scalars[pos].value)) {
            out.append(scalars[pos]); pos += 1
        }
        return String(out)
    }

    mutating func requireSpace(after keyword: String) throws(ProbeParseError) {
        guard pos < scalars.count, Self.isSpace(scalars[pos]) else {
            throw fail(.expectedSpace, at: pos, pos < scalars.count ? "expected a space after '\(keyword)'" : "expected a path after '\(keyword)'")
        }
        skipSpace()
    }

    mutating func skipSpace() { while pos < scalars.count, Self.isSpace(scalars[pos]) { pos += 1 } }

    static func isSpace(_ s: Unicode.Scalar) -> Bool { s == " " || s == "\t" || s == "\n" || s == "\r" }

    func suggestion(_ word: String, among: [String]) -> String {
        guard let near = among.min(by: { editDistance($0, word) < editDistance($1, word) }), editDistance(near, word) <= 2 else { return "" }
        return "did you mean '\(near)'? "
    }

    // MARK: errors

    /// An error at scalar index `index`: its line and column, and the line with a caret under the column.
    func fail(_ code: ProbeParseError.Code, at index: Int, _ message: String, hint: String? = nil) -> ProbeParseError {
        var line = 1, lineStart = 0
        for i in 0..<min(index, scalars.count) where scalars[i] == "\n" { line += 1; lineStart = i + 1 }
        var lineEnd = lineStart
        while lineEnd < scalars.count, scalars[lineEnd] != "\n" { lineEnd += 1 }
        let column = index - lineStart + 1
        // The excerpt shows at most 140 scalars around the column, control characters as '?'.
        let from = max(lineStart, min(index, lineEnd) - 80), to = min(lineEnd, max(from, index) + 60)
        let visible = String(String.UnicodeScalarView(scalars[from..<to].map { s -> Unicode.Scalar in s.value < 0x20 || s.value == 0x7f ? "?" : s }))
        let excerpt = "    " + visible + "\n    " + String(repeating: " ", count: max(0, index - from)) + "^"
        return ProbeParseError(code: code, message: message, line: line, column: column, excerpt: excerpt, origin: origin, hint: hint)
    }
}
