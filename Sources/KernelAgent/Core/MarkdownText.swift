/// Host and user text that goes into an issue or a comment stays text: these put it where Markdown (CommonMark as
/// Gitea renders it) cannot read a heading, a link, an image, an `@mention` or HTML into it.
package enum MarkdownText {
    /// Inert text on one line: no HTML, no links, no emphasis, no headings, no table breaks, no mentions.
    package static func inline(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.count)
        for c in s {
            switch c {
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "&": out += "&amp;"
            case "\\", "`", "*", "_", "[", "]", "|", "#", "!", "~", "(", ")": out += "\\" + String(c)
            // A word joiner after `@`: Gitea finds mentions in the rendered text, where `\@name` is `@name` again.
            case "@": out += "@\u{2060}"
            case "\n", "\r", "\t": out += " "
            default: out.append(c)
            }
        }
        // Bare URLs are links in GFM (and Gitea): a word joiner breaks the scheme and `www.` from the rest.
        if out.contains(":") || out.lowercased().contains("www.") {
            out = out.replacingOccurrences(of: "://", with: ":\u{2060}//")
                .replacingOccurrences(of: "www.", with: "www\u{2060}.", options: .caseInsensitive)
        }
        return out
    }

    /// The longest run of `mark` in `s`.
    static func longestRun(of mark: Character, in s: String) -> Int {
        var longest = 0, run = 0
        for c in s { if c == mark { run += 1; longest = max(longest, run) } else { run = 0 } }
        return longest
    }

    /// A code span that holds any one-line text: fenced with more backticks than it holds in a row.
    package static func code(_ s: String) -> String {
        let flat = s.replacingOccurrences(of: "\r\n", with: " ").replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "\r", with: " ")
        let fence = String(repeating: "`", count: longestRun(of: "`", in: flat) + 1)
        let pad = flat.hasPrefix("`") || flat.hasSuffix("`") ? " " : ""
        return fence + pad + flat + pad + fence
    }

    /// A fenced code block that holds any text: its fence is a run of backticks longer than any in the text (and
    /// at least three), so no line of the text can close it (CommonMark 4.5). `info` is the language tag.
    package static func block(_ text: String, info: String = "") -> String {
        let body = text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        let fence = String(repeating: "`", count: max(3, longestRun(of: "`", in: body) + 1))
        let trimmed = body.hasSuffix("\n") ? String(body.dropLast()) : body
        return fence + info + "\n" + trimmed + "\n" + fence
    }
}
