import Foundation
import CLibFuzzer
import KernelAgent

/// Shared by the fuzz targets (built only with KA_FUZZ=1, see Package.swift and scripts/fuzz).
/// Each target exports `LLVMFuzzerTestOneInput`; libFuzzer supplies main() and calls it once per input.
/// A crash, a Swift trap, an ASan report or a `FuzzCheck` failure is a finding: libFuzzer writes the input
/// to its artifact file and exits non-zero.
public enum FuzzInput {
    public static func bytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
        guard let data, size > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: size))
    }

    public static func data(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Data { Data(bytes(data, size)) }

    /// The input as text the way the readers get it from disk or a JSON string: invalid UTF-8 is replaced.
    public static func text(_ data: UnsafePointer<UInt8>?, _ size: Int) -> String {
        String(decoding: bytes(data, size), as: UTF8.self)
    }
}

public enum FuzzCheck {
    /// An invariant of the reader: when it does not hold, report and abort so libFuzzer keeps the input.
    public static func require(_ condition: Bool, _ message: @autoclosure () -> String,
                               file: StaticString = #fileID, line: UInt = #line) {
        guard !condition else { return }
        FileHandle.standardError.write(Data("FuzzCheck failed at \(file):\(line): \(message())\n".utf8))
        abort()
    }

    /// Runs a reader on bad input: it may return or refuse with a KAError (which names where and why);
    /// any other error is untyped and counts as a finding.
    @discardableResult
    public static func refusesOnlyWithKAError<T>(_ reader: String, _ body: () throws -> T,
                                                 file: StaticString = #fileID, line: UInt = #line) -> T? {
        do { return try body() } catch is KAError { return nil } catch {
            require(false, "\(reader) threw an untyped error: \(type(of: error)): \(error)", file: file, line: line)
            return nil
        }
    }
}

public enum FuzzDriver {
    /// The top-level code of each fuzz target: runs libFuzzer on `testOneInput` with the command line's options.
    /// (When libFuzzer's own main() is the one linked, it calls `LLVMFuzzerTestOneInput` directly instead.)
    public static func run(_ testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> Never {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, testOneInput))
    }
}
