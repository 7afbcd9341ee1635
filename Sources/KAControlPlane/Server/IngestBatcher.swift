import Foundation
import GRDB
import NIOConcurrencyHelpers

/// Group commit for webhook deliveries: handlers hand their (delivery id, event) over and wait; one writer
/// thread stores everything that queued up meanwhile in a single transaction and answers each handler.
/// The ack still means "stored", but 32 concurrent deliveries cost one commit, not 64.
final class IngestBatcher: Sendable {
    enum Outcome: Sendable { case stored(new: Bool), duplicateDelivery, failed(String) }

    struct Item: Sendable {
        let delivery: String?
        let event: Ledger.Event?
        let done: @Sendable (Outcome) -> Void
    }

    private let ledger: Ledger
    private let pending = NIOLockedValueBox<[Item]>([])
    private let wake = DispatchSemaphore(value: 0)

    init(ledger: Ledger) {
        self.ledger = ledger
        let t = Thread { [weak self] in self?.loop() }
        t.name = "ka-ingest-writer"
        t.start()
    }

    func submit(delivery: String?, event: Ledger.Event?) async -> Outcome {
        await withCheckedContinuation { cont in
            pending.withLockedValue { $0.append(Item(delivery: delivery, event: event, done: { cont.resume(returning: $0) })) }
            wake.signal()
        }
    }

    private func loop() {
        while true {
            wake.wait()
            let batch: [Item] = pending.withLockedValue { p in defer { p.removeAll(keepingCapacity: true) }; return p }
            guard !batch.isEmpty else { continue }
            var outcomes: [Outcome]
            do {
                outcomes = try ledger.storeDeliveries(batch.map { ($0.delivery, $0.event) }, at: Date()).map { stored in
                    switch stored {
                    case .duplicateDelivery: return .duplicateDelivery
                    case let .stored(new): return .stored(new: new)
                    }
                }
            } catch {
                outcomes = batch.map { _ in .failed("\(error)") }
            }
            for (item, o) in zip(batch, outcomes) { item.done(o) }
        }
    }
}
