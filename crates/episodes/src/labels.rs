//! Sirius frame labels. A frame's label is its control source, except that the `window` Robot
//! frames right before each takeover become `pre-intervention`: the policy was heading
//! somewhere the human did not like, so those frames should not be imitated.
//!
//! Derived at read time, never recorded, so the window can be tuned after the fact.

use crate::types::{ControlSource, Label};

/// Sirius's window: about 15 steps before each takeover.
pub const DEFAULT_PRE_INTERVENTION_WINDOW: usize = 15;

/// Frame indices where the human takes over: an Intervention frame whose predecessor is not
/// an Intervention frame (an episode that starts under intervention counts at index 0).
pub fn takeover_indices(sources: &[ControlSource]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut prev: Option<ControlSource> = None;
    for (i, &s) in sources.iter().enumerate() {
        if s == ControlSource::Intervention && prev != Some(ControlSource::Intervention) {
            out.push(i);
        }
        prev = Some(s);
    }
    out
}

/// Label every frame. Only Robot frames are relabelled: demo and intervention frames keep
/// their class, and a window never reaches back across an earlier intervention.
pub fn derive_labels(sources: &[ControlSource], window: usize) -> Vec<Label> {
    let mut labels: Vec<Label> = sources.iter().map(|&s| Label::from(s)).collect();
    for takeover in takeover_indices(sources) {
        let start = takeover.saturating_sub(window);
        for label in labels.iter_mut().take(takeover).skip(start).rev() {
            match *label {
                Label::Robot | Label::PreIntervention => *label = Label::PreIntervention,
                // Stop at the previous human segment: those frames are not the policy's.
                Label::Intervention | Label::Demo => break,
            }
        }
    }
    labels
}
