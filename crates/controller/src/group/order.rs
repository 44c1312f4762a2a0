//! The restore order: each unit (a pod, or one container) restores once the units it
//! waits for run at the destination (see [`ferry_engine::group::Group::restore_waits`]).

use tokio::sync::{mpsc, oneshot};

/// One unit's side of the restore order: the words that let its members restore, and
/// the signals that they run at the destination.
#[derive(Default)]
pub(super) struct UnitOrder {
    pub gates: Vec<oneshot::Sender<()>>,
    pub running: Vec<oneshot::Receiver<()>>,
}

impl UnitOrder {
    /// A member's pair: the gate it waits on, and the signal it fires once it runs.
    pub fn member(&mut self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (gate_tx, gate_rx) = oneshot::channel();
        let (run_tx, run_rx) = oneshot::channel();
        self.gates.push(gate_tx);
        self.running.push(run_rx);
        (gate_rx, run_tx)
    }
}

/// Opens each unit's gates once every unit in its `waits` runs. A unit that ends without
/// all its members running stops the order: the gates not yet opened are dropped, and
/// the members behind them roll back without restoring.
pub(super) async fn order_restores(waits: Vec<Vec<usize>>, units: Vec<UnitOrder>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, bool)>();
    let mut gates = Vec::new();
    for (i, u) in units.into_iter().enumerate() {
        gates.push(Some(u.gates));
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut all = true;
            for r in u.running {
                all &= r.await.is_ok();
            }
            let _ = tx.send((i, all));
        });
    }
    drop(tx);
    let mut running = vec![false; waits.len()];
    loop {
        for (i, w) in waits.iter().enumerate() {
            if w.iter().all(|&j| running[j]) {
                for g in gates[i].take().unwrap_or_default() {
                    let _ = g.send(());
                }
            }
        }
        if gates.iter().all(Option::is_none) {
            return;
        }
        match rx.recv().await {
            Some((i, true)) => running[i] = true,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn gates_open_in_order_and_a_failure_closes_the_rest() {
        // Unit 0 waits for 1, which waits for 2.
        let waits = vec![vec![1, 2], vec![2], vec![]];
        let mut units: Vec<UnitOrder> = (0..3).map(|_| UnitOrder::default()).collect();
        let mut pairs: Vec<_> = units.iter_mut().map(|u| u.member()).collect();
        let order = tokio::spawn(order_restores(waits.clone(), units));
        let (g2, r2) = pairs.pop().unwrap();
        let (mut g1, r1) = pairs.pop().unwrap();
        let (mut g0, _r0) = pairs.pop().unwrap();
        g2.await.expect("the first unit may restore at once");
        tokio::task::yield_now().await;
        assert!(g1.try_recv().is_err(), "unit 1 waits for unit 2");
        r2.send(()).unwrap();
        g1.await.expect("unit 1 once unit 2 runs");
        assert!(g0.try_recv().is_err(), "unit 0 waits for unit 1");
        drop(r1);
        order.await.unwrap();
        assert!(g0.await.is_err(), "unit 1 failed: unit 0 never restores");
    }
}
