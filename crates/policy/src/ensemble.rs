//! ACT temporal ensembling (Zhao et al. 2023).
//!
//! A chunk pushed at tick `t` predicts the actions for ticks `t, t+1, ..., t+k-1`. The action
//! executed at tick `T` is the weighted mean of every stored prediction for `T`, with weights
//! `w_i = exp(-m i)` where `i = 0` is the OLDEST prediction (so with m > 0 older predictions
//! weigh more, which smooths the motion).
//!
//! Memory is bounded: at most `k` chunks are kept, because a chunk pushed `k` or more ticks
//! before the newest can no longer cover a tick at or after the newest push. Pushing never
//! allocates once the ensembler exists.

/// One stored chunk: the tick it starts at and its `k x act_dim` absolute actions.
#[derive(Debug, Clone)]
struct Slot {
    start: Option<u64>,
    actions: Vec<f64>,
}

#[derive(Debug, Clone)]
pub struct TemporalEnsembler {
    chunk: usize,
    act_dim: usize,
    m: f64,
    slots: Vec<Slot>,
    /// Scratch for the covering slots, kept to avoid allocating in `action_into`.
    order: Vec<(u64, usize)>,
}

/// A chunk that does not have the shape the ensembler was built for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("chunk shape mismatch: expected {expected_steps} steps x {expected_dim} actions (and {expected_dim} measured positions for delta chunks), got {got_steps} steps x {got_dim}")]
pub struct ChunkShapeError {
    pub expected_steps: usize,
    pub expected_dim: usize,
    pub got_steps: usize,
    pub got_dim: usize,
}

impl TemporalEnsembler {
    /// `chunk` = k steps per prediction (values below 1 are treated as 1), `act_dim` actions per
    /// step, `m` = decay of the weights.
    pub fn new(chunk: usize, act_dim: usize, m: f64) -> Self {
        let chunk = chunk.max(1);
        let slots = (0..chunk)
            .map(|_| Slot {
                start: None,
                actions: vec![0.0; chunk * act_dim],
            })
            .collect();
        TemporalEnsembler {
            chunk,
            act_dim,
            m,
            slots,
            order: Vec::with_capacity(chunk),
        }
    }

    pub fn chunk_size(&self) -> usize {
        self.chunk
    }

    pub fn act_dim(&self) -> usize {
        self.act_dim
    }

    /// Stores an absolute chunk predicted at `tick` (`chunk.len() == k`, each row `act_dim`).
    pub fn push(&mut self, tick: u64, chunk: &[Vec<f32>]) -> Result<(), ChunkShapeError> {
        self.push_with_base(tick, chunk, None)
    }

    /// Stores a delta chunk predicted at `tick`: each action is an offset from `measured_q`, the
    /// joint positions measured when the observation was taken (not the current ones).
    pub fn push_delta(
        &mut self,
        tick: u64,
        chunk: &[Vec<f32>],
        measured_q: &[f64],
    ) -> Result<(), ChunkShapeError> {
        self.push_with_base(tick, chunk, Some(measured_q))
    }

    fn push_with_base(
        &mut self,
        tick: u64,
        chunk: &[Vec<f32>],
        base: Option<&[f64]>,
    ) -> Result<(), ChunkShapeError> {
        let bad_row = chunk.iter().find(|r| r.len() != self.act_dim);
        let bad_base = base.is_some_and(|b| b.len() != self.act_dim);
        if chunk.len() != self.chunk || bad_row.is_some() || bad_base {
            return Err(ChunkShapeError {
                expected_steps: self.chunk,
                expected_dim: self.act_dim,
                got_steps: chunk.len(),
                got_dim: bad_row
                    .map(Vec::len)
                    .or(base.filter(|_| bad_base).map(<[f64]>::len))
                    .unwrap_or(self.act_dim),
            });
        }
        let act_dim = self.act_dim;
        let Some(slot) = self.slot_for(tick) else {
            // Older than every stored chunk while the buffer is full: it covers nothing the
            // newer chunks do not, and it would be evicted first anyway.
            return Ok(());
        };
        slot.start = Some(tick);
        for (dst_row, src_row) in slot.actions.chunks_exact_mut(act_dim).zip(chunk) {
            for (j, (d, &s)) in dst_row.iter_mut().zip(src_row).enumerate() {
                let b = base.and_then(|b| b.get(j)).copied().unwrap_or(0.0);
                *d = b + f64::from(s);
            }
        }
        Ok(())
    }

    /// The slot a chunk for `tick` goes into: the same tick (replace), else an empty slot,
    /// else the one with the oldest start if it is older than `tick`.
    fn slot_for(&mut self, tick: u64) -> Option<&mut Slot> {
        let mut best: Option<(usize, Option<u64>)> = None;
        for (i, s) in self.slots.iter().enumerate() {
            match s.start {
                Some(t) if t == tick => {
                    best = Some((i, Some(t)));
                    break;
                }
                None => {
                    if !matches!(best, Some((_, None))) {
                        best = Some((i, None));
                    }
                }
                Some(t) => match best {
                    None => best = Some((i, Some(t))),
                    Some((_, Some(b))) if t < b => best = Some((i, Some(t))),
                    _ => {}
                },
            }
        }
        let (i, start) = best?;
        if let Some(s) = start {
            if s > tick {
                return None;
            }
        }
        self.slots.get_mut(i)
    }

    /// The ensembled action for `tick`, or None when no stored chunk covers it.
    pub fn action(&mut self, tick: u64) -> Option<Vec<f64>> {
        let mut out = vec![0.0; self.act_dim];
        self.action_into(tick, &mut out).then_some(out)
    }

    /// Like [`action`](Self::action) but writes into `out` (length `act_dim`) without
    /// allocating. Returns false (and leaves `out` unspecified) when nothing covers `tick`.
    pub fn action_into(&mut self, tick: u64, out: &mut [f64]) -> bool {
        self.order.clear();
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(start) = s.start {
                if start <= tick && tick - start < self.chunk as u64 {
                    self.order.push((start, i));
                }
            }
        }
        if self.order.is_empty() || out.len() != self.act_dim {
            return false;
        }
        // Oldest prediction first: it gets i = 0, weight 1.
        self.order.sort_unstable();
        out.iter_mut().for_each(|v| *v = 0.0);
        let mut total = 0.0;
        for (rank, &(start, slot)) in self.order.iter().enumerate() {
            let w = (-self.m * rank as f64).exp();
            total += w;
            let step = (tick - start) as usize;
            let row = self.slots.get(slot).and_then(|s| {
                s.actions
                    .get(step * self.act_dim..(step + 1) * self.act_dim)
            });
            if let Some(row) = row {
                for (o, &a) in out.iter_mut().zip(row) {
                    *o += w * a;
                }
            }
        }
        out.iter_mut().for_each(|v| *v /= total);
        true
    }

    /// How many stored chunks cover `tick`.
    pub fn coverage(&self, tick: u64) -> usize {
        self.slots
            .iter()
            .filter_map(|s| s.start)
            .filter(|&s| s <= tick && tick - s < self.chunk as u64)
            .count()
    }

    /// Forgets every prediction. Call whenever control changes hands: predictions made before
    /// a takeover describe a trajectory the arm is no longer on.
    pub fn reset(&mut self) {
        for s in &mut self.slots {
            s.start = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[&[f32]]) -> Vec<Vec<f32>> {
        v.iter().map(|r| r.to_vec()).collect()
    }

    #[test]
    fn weighted_mean_matches_a_hand_computation() {
        // k = 3, one action, m = 0.5.
        let mut e = TemporalEnsembler::new(3, 1, 0.5);
        e.push(0, &rows(&[&[1.0], &[2.0], &[3.0]])).unwrap();
        e.push(1, &rows(&[&[10.0], &[20.0], &[30.0]])).unwrap();
        e.push(2, &rows(&[&[100.0], &[200.0], &[300.0]])).unwrap();
        // Tick 2 is predicted by chunk 0 (step 2: 3), chunk 1 (step 1: 20), chunk 2 (step 0: 100).
        // Weights, oldest first: 1, e^-0.5, e^-1.
        let (w0, w1, w2) = (1.0, (-0.5f64).exp(), (-1.0f64).exp());
        let want = (w0 * 3.0 + w1 * 20.0 + w2 * 100.0) / (w0 + w1 + w2);
        let got = e.action(2).unwrap()[0];
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        // Tick 3: chunk 1 (step 2: 30) and chunk 2 (step 1: 200).
        let want3 = (w0 * 30.0 + w1 * 200.0) / (w0 + w1);
        assert!((e.action(3).unwrap()[0] - want3).abs() < 1e-12);
        // Tick 5 is beyond every chunk.
        assert_eq!(e.action(5), None);
        assert_eq!(e.coverage(2), 3);
    }

    #[test]
    fn m_zero_is_a_plain_mean_and_order_of_pushes_does_not_matter() {
        let mut a = TemporalEnsembler::new(2, 2, 0.3);
        let mut b = a.clone();
        let c0 = rows(&[&[1.0, -1.0], &[3.0, -3.0]]);
        let c1 = rows(&[&[5.0, -5.0], &[7.0, -7.0]]);
        a.push(0, &c0).unwrap();
        a.push(1, &c1).unwrap();
        b.push(1, &c1).unwrap();
        b.push(0, &c0).unwrap();
        assert_eq!(a.action(1), b.action(1));
        let mut z = TemporalEnsembler::new(2, 2, 0.0);
        z.push(0, &c0).unwrap();
        z.push(1, &c1).unwrap();
        assert_eq!(z.action(1).unwrap(), vec![4.0, -4.0]);
    }

    #[test]
    fn memory_is_bounded_to_k_chunks_and_oldest_is_evicted() {
        let mut e = TemporalEnsembler::new(2, 1, 0.0);
        for t in 0..100u64 {
            e.push(t, &rows(&[&[t as f32], &[t as f32 + 0.5]])).unwrap();
        }
        assert_eq!(e.slots.len(), 2);
        // Tick 99: chunk 98 step 1 (98.5) and chunk 99 step 0 (99).
        assert_eq!(e.action(99).unwrap(), vec![(98.5 + 99.0) / 2.0]);
        // A late chunk older than everything stored is dropped, not mixed in.
        e.push(10, &rows(&[&[-1e6], &[-1e6]])).unwrap();
        assert_eq!(e.action(99).unwrap(), vec![(98.5 + 99.0) / 2.0]);
        // Re-pushing the same tick replaces.
        e.push(99, &rows(&[&[0.0], &[0.0]])).unwrap();
        assert_eq!(e.action(99).unwrap(), vec![98.5 / 2.0]);
    }

    #[test]
    fn reset_forgets_everything() {
        let mut e = TemporalEnsembler::new(3, 1, 0.01);
        e.push(0, &rows(&[&[1.0], &[1.0], &[1.0]])).unwrap();
        assert!(e.action(1).is_some());
        e.reset();
        assert_eq!(e.action(1), None);
        assert_eq!(e.coverage(0), 0);
    }

    #[test]
    fn delta_chunks_use_the_q_measured_at_prediction_time() {
        let mut e = TemporalEnsembler::new(2, 2, 0.0);
        e.push_delta(0, &rows(&[&[0.1, -0.1], &[0.2, -0.2]]), &[1.0, 2.0])
            .unwrap();
        // The arm has moved since, but tick 1 still uses q from tick 0.
        e.push_delta(1, &rows(&[&[0.0, 0.0], &[0.0, 0.0]]), &[1.5, 2.5])
            .unwrap();
        let a = e.action(1).unwrap();
        let want = [
            (1.0 + 0.2f32 as f64 + 1.5) / 2.0,
            (2.0 - 0.2f32 as f64 + 2.5) / 2.0,
        ];
        assert!(
            (a[0] - want[0]).abs() < 1e-12 && (a[1] - want[1]).abs() < 1e-12,
            "{a:?}"
        );
    }

    #[test]
    fn wrong_shapes_are_errors_not_panics() {
        let mut e = TemporalEnsembler::new(2, 2, 0.0);
        assert!(e.push(0, &rows(&[&[1.0, 2.0]])).is_err());
        assert!(e.push(0, &rows(&[&[1.0, 2.0], &[1.0]])).is_err());
        let err = e
            .push_delta(0, &rows(&[&[1.0, 2.0], &[1.0, 2.0]]), &[0.0])
            .unwrap_err();
        assert_eq!(err.got_dim, 1);
        let mut out = [0.0; 3];
        assert!(!e.action_into(0, &mut out));
    }
}
