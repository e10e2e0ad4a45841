use intervened_episodes::ControlSource::{Demo, Intervention as I, Robot as R};
use intervened_episodes::{derive_labels, takeover_indices, ControlSource, Label};

fn seq(spec: &[(ControlSource, usize)]) -> Vec<ControlSource> {
    spec.iter()
        .flat_map(|&(s, n)| std::iter::repeat_n(s, n))
        .collect()
}

#[test]
fn window_before_each_takeover_is_pre_intervention() {
    // 20 robot, 5 human, 10 robot, 3 human, 4 robot
    let s = seq(&[(R, 20), (I, 5), (R, 10), (I, 3), (R, 4)]);
    assert_eq!(takeover_indices(&s), vec![20, 35]);
    let l = derive_labels(&s, 15);
    // Frames 5..20 (15 of them) precede the first takeover.
    for (i, label) in l.iter().enumerate().take(5) {
        assert_eq!(*label, Label::Robot, "frame {i}");
    }
    for (i, label) in l.iter().enumerate().take(20).skip(5) {
        assert_eq!(*label, Label::PreIntervention, "frame {i}");
    }
    for label in &l[20..25] {
        assert_eq!(*label, Label::Intervention);
    }
    // Only 10 robot frames between the two takeovers: all of them, and never the human ones.
    for label in &l[25..35] {
        assert_eq!(*label, Label::PreIntervention);
    }
    for label in &l[35..38] {
        assert_eq!(*label, Label::Intervention);
    }
    for label in &l[38..] {
        assert_eq!(*label, Label::Robot);
    }
    let pre = l.iter().filter(|&&x| x == Label::PreIntervention).count();
    assert_eq!(pre, 25);
}

#[test]
fn window_sizes_and_edges() {
    let s = seq(&[(R, 3), (I, 2)]);
    // Window larger than the lead-in clips at frame 0.
    assert_eq!(
        derive_labels(&s, 15),
        vec![
            Label::PreIntervention,
            Label::PreIntervention,
            Label::PreIntervention,
            Label::Intervention,
            Label::Intervention
        ]
    );
    // Window 0 relabels nothing.
    assert_eq!(derive_labels(&s, 0)[2], Label::Robot);
    // Window 1: only the frame right before.
    let l = derive_labels(&s, 1);
    assert_eq!(
        &l[..3],
        &[Label::Robot, Label::Robot, Label::PreIntervention]
    );
    // An episode that starts under intervention has a takeover at 0 and no window.
    let s = seq(&[(I, 2), (R, 2)]);
    assert_eq!(takeover_indices(&s), vec![0]);
    assert_eq!(derive_labels(&s, 15)[2..], [Label::Robot, Label::Robot]);
    // Demo frames are never relabelled, and stop the window.
    let s = seq(&[(R, 2), (Demo, 2), (I, 1)]);
    assert_eq!(
        derive_labels(&s, 15),
        vec![
            Label::Robot,
            Label::Robot,
            Label::Demo,
            Label::Demo,
            Label::Intervention
        ]
    );
    assert!(derive_labels(&[], 15).is_empty());
}
