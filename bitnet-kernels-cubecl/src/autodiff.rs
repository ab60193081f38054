//! Under Autodiff the op is the Burn-ops composition, so gradients flow to the activations and the scales.

use burn::tensor::backend::Backend;
use burn_autodiff::checkpoint::strategy::CheckpointStrategy;
use burn_autodiff::Autodiff;

use crate::TernaryBackend;

impl<B: TernaryBackend + Backend, C: CheckpointStrategy> TernaryBackend for Autodiff<B, C> {}
