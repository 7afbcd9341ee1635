import Testing
@testable import KernelAgent
@Test func version() { #expect(!KA.version.isEmpty) }
