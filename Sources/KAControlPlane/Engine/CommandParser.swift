import Foundation

/// One `/ka-<verb> args…` found in a comment, or a `[ka:<verb>] args` title.
package struct Invocation: Equatable, Sendable, Codable {
    package let verb: String
    package let args: [String]
    /// 1-based line in the comment body (0 for a title).
    package let line: Int
    package let raw: String
}

package struct ParseProblem: Error, Equatable, Sendable {
    package let line: Int
    package let raw: String
    package let message: String
}

/// Finds slash-commands in a comment body. A command starts at column 0 of a line with `/ka-`. Lines inside
/// fenced code (``` or ~~~), indented code (4 spaces or a tab), blockquotes and HTML comments never count:
/// quoting someone's `/ka-install` must not run it.
package enum CommandParser {
    package static func parse(comment body: String) -> [Result<Invocation, ParseProblem>] {
        var out: [Result<Invocation, ParseProblem>] = []
        var fence: String?          // the opening fence while inside fenced code
        var inHTMLComment = false
        let lines = body.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false)
        for (i, raw) in lines.enumerated() {
            var line = Substring(raw)
            if inHTMLComment {
                guard let end = line.range(of: "-->") else { continue }
                inHTMLComment = false
                line = line[end.upperBound...]
                if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
                continue   // text after a closing --> on the same line is not at line start
            }
            let trimmedLead = line.drop { $0 == " " }
            let indent = line.count - trimmedLead.count
            if let f = fence {
                if indent <= 3, trimmedLead.hasPrefix(f), trimmedLead.drop(while: { $0 == f.first }).trimmingCharacters(in: .whitespaces).isEmpty {
                    fence = nil
                }
                continue
            }
            if indent <= 3, trimmedLead.hasPrefix("```") || trimmedLead.hasPrefix("~~~") {
                let ch = trimmedLead.first ?? "`"
                fence = String(repeating: ch, count: trimmedLead.prefix { $0 == ch }.count)
                continue
            }
            if line.hasPrefix("\t") || indent >= 4 { continue }           // indented code
            if trimmedLead.hasPrefix(">") { continue }                    // blockquote
            if let start = line.range(of: "<!--") {
                if line[start.upperBound...].range(of: "-->") == nil { inHTMLComment = true }
                if start.lowerBound == line.startIndex { continue }
                line = line[..<start.lowerBound]
            }
            guard line.hasPrefix("/ka-") else { continue }
            let text = String(line).trimmingCharacters(in: .whitespaces)
            let head = text.dropFirst(4).prefix { $0.isLetter || $0.isNumber || $0 == "-" }
            let rest = text.dropFirst(4 + head.count)
            guard !head.isEmpty, rest.isEmpty || rest.first == " " || rest.first == "\t" else {
                out.append(.failure(ParseProblem(line: i + 1, raw: text, message: "not a command: expected /ka-<verb> [args…]")))
                continue
            }
            do {
                out.append(.success(Invocation(verb: String(head).lowercased(), args: try split(String(rest)), line: i + 1, raw: text)))
            } catch let p as ParseProblem {
                out.append(.failure(ParseProblem(line: i + 1, raw: text, message: p.message)))
            } catch {
                out.append(.failure(ParseProblem(line: i + 1, raw: text, message: "\(error)")))
            }
        }
        return out
    }

    /// The `<word>` of a `[ka:<word>] …` title, lowercased; nil for any other title.
    package static func titleWord(_ title: String) -> String? {
        let t = title.trimmingCharacters(in: .whitespaces)
        guard t.hasPrefix("[ka:"), let close = t.firstIndex(of: "]") else { return nil }
        let word = t[t.index(t.startIndex, offsetBy: 4)..<close]
        guard !word.isEmpty, word.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else { return nil }
        return word.lowercased()
    }

    /// `[ka:<verb>] args` in an issue title.
    package static func parse(title: String) -> Result<Invocation, ParseProblem>? {
        let t = title.trimmingCharacters(in: .whitespaces)
        guard let verb = titleWord(t), let close = t.firstIndex(of: "]") else { return nil }
        do {
            return .success(Invocation(verb: verb, args: try split(String(t[t.index(after: close)...])), line: 0, raw: t))
        } catch let p as ParseProblem {
            return .failure(ParseProblem(line: 0, raw: t, message: p.message))
        } catch { return nil }
    }

    /// Shell-like words: '…' literal, "…" with \" \\ escapes, backslash escapes outside quotes. No expansion
    /// of any kind ($, `, globs and ~ stay literal).
    package static func split(_ s: String) throws -> [String] {
        var words: [String] = []
        var cur = ""
        var inWord = false
        var it = Array(s).makeIterator()
        while let c = it.next() {
            switch c {
            case " ", "\t":
                if inWord { words.append(cur); cur = ""; inWord = false }
            case "'":
                inWord = true
                var closed = false
                while let d = it.next() { if d == "'" { closed = true; break }; cur.append(d) }
                if !closed { throw ParseProblem(line: 0, raw: s, message: "unterminated ' quote") }
            case "\"":
                inWord = true
                var closed = false
                while let d = it.next() {
                    if d == "\"" { closed = true; break }
                    if d == "\\" {
                        guard let e = it.next() else { break }
                        if e == "\"" || e == "\\" { cur.append(e) } else { cur.append("\\"); cur.append(e) }
                        continue
                    }
                    cur.append(d)
                }
                if !closed { throw ParseProblem(line: 0, raw: s, message: "unterminated \" quote") }
            case "\\":
                inWord = true
                if let e = it.next() { cur.append(e) }
            default:
                inWord = true
                cur.append(c)
            }
        }
        if inWord { words.append(cur) }
        return words
    }
}
