//! Checks an exported TorchScript file against the model it came from.

use std::path::Path;

use tch::{CModule, Device, Kind, Tensor};

use crate::error::TrainError;
use crate::model::{ModelInputs, TrainedPolicy};

pub(super) fn verification(e: impl std::fmt::Display) -> TrainError {
    TrainError::Verification {
        message: e.to_string(),
    }
}

/// Reloads an exported `policy.pt` and checks it against the in-memory model on `inputs`:
/// same output shape `[B, K, chunk, act]`, finite, equal within 1e-4 (relative to scale).
/// Returns the largest absolute difference.
pub fn verify_export(
    policy: &TrainedPolicy,
    pt: &Path,
    inputs: &[Vec<f32>],
) -> Result<f64, TrainError> {
    verify_export_inputs(
        policy,
        pt,
        &ModelInputs {
            obs: inputs.to_vec(),
            images: Vec::new(),
        },
    )
}

/// [`verify_export`] for any policy: `inputs` carries an image policy's images too.
pub fn verify_export_inputs(
    policy: &TrainedPolicy,
    pt: &Path,
    inputs: &ModelInputs,
) -> Result<f64, TrainError> {
    if inputs.is_empty() {
        return Err(verification("no inputs to check the export with"));
    }
    let module = CModule::load_on_device(pt, Device::Cpu).map_err(verification)?;
    let (x, imgs) = policy.input_tensors(inputs).map_err(verification)?;
    let mut args: Vec<&Tensor> = vec![&x];
    args.extend(imgs.iter());
    let (got, want) = tch::no_grad(|| -> Result<(Tensor, Tensor), TrainError> {
        Ok((
            module.forward_ts(&args).map_err(verification)?,
            policy.forward_images(&x, &imgs),
        ))
    })?;
    let shape = [
        inputs.len() as i64,
        policy.ensemble_size() as i64,
        policy.spec.chunk as i64,
        policy.spec.act_dim as i64,
    ];
    if got.size() != shape {
        return Err(verification(format!(
            "output shape {:?}, expected {shape:?}",
            got.size()
        )));
    }
    let got = got.to_kind(Kind::Float);
    let finite = bool::try_from(got.isfinite().all()).map_err(verification)?;
    if !finite {
        return Err(verification("the exported model outputs non-finite values"));
    }
    let diff = f64::try_from((&got - &want).abs().max()).map_err(verification)?;
    let scale = f64::try_from(want.abs().max()).map_err(verification)?;
    // NaN-safe: a NaN difference must fail too.
    if diff.is_nan() || diff > 1e-4 * (1.0 + scale) {
        return Err(verification(format!(
            "reloaded model differs from the trained one by {diff} (scale {scale})"
        )));
    }
    Ok(diff)
}
