//! Resumable training checkpoints: the run's config, the latent model, the AdamW moments and the step count, in
//! one directory, replaced as a whole so an interrupted save leaves the previous checkpoint intact.

use std::path::{Path, PathBuf};

use burn::config::Config;
use burn::module::Module;
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;

use super::trainer::optimizer;
use super::{schedule, TrainConfig, Trainer};
use crate::nn::BitNet;
use crate::TernaryBackend;

const CONFIG: &str = "config.json";
const MODEL: &str = "model";
const OPTIMIZER: &str = "optimizer";
const STEP: &str = "step.txt";

/// Why a checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file or directory could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file exists but does not hold what a checkpoint holds.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(path: &Path, message: impl ToString) -> CheckpointError {
    CheckpointError::Invalid {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

impl<B: AutodiffBackend + TernaryBackend> Trainer<B>
where
    B::InnerBackend: TernaryBackend,
{
    /// Writes everything [`Trainer::resume`] needs into `dir` (replacing an earlier checkpoint there).
    pub fn save(&self, dir: &Path) -> Result<(), CheckpointError> {
        let name = dir
            .file_name()
            .ok_or_else(|| invalid(dir, "not a directory name"))?;
        let staging = dir.with_file_name(format!("{}.partial", name.to_string_lossy()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
        }
        std::fs::create_dir_all(&staging).map_err(io(&staging))?;
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        let file = staging.join(CONFIG);
        self.config.save(&file).map_err(io(&file))?;
        let file = staging.join(MODEL);
        self.net
            .model
            .clone()
            .save_file(&file, &recorder)
            .map_err(|e| invalid(&file, e))?;
        let file = staging.join(OPTIMIZER);
        recorder
            .record(self.optim.to_record(), file.clone())
            .map_err(|e| invalid(&file, e))?;
        let file = staging.join(STEP);
        std::fs::write(&file, format!("{}\n", self.step)).map_err(io(&file))?;
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::rename(&staging, dir).map_err(io(dir))
    }

    /// The trainer saved in `dir` by [`Trainer::save`], ready to take its next step.
    pub fn resume(dir: &Path, device: &B::Device) -> Result<Self, CheckpointError> {
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        let file = dir.join(CONFIG);
        let config = TrainConfig::load(&file).map_err(|e| invalid(&file, e))?;
        let file = dir.join(STEP);
        let text = std::fs::read_to_string(&file).map_err(io(&file))?;
        let step: usize = text
            .trim()
            .parse()
            .map_err(|_| invalid(&file, format!("expected a step count, found {text:?}")))?;
        if step > config.steps {
            return Err(invalid(
                &file,
                format!("step {step} is past the run's {} steps", config.steps),
            ));
        }
        let file = dir.join(MODEL);
        let model = BitNet::<B>::init(config.model.clone(), true, device)
            .model
            .load_file(&file, &recorder, device)
            .map_err(|e| invalid(&file, e))?;
        let file = dir.join(OPTIMIZER);
        let record = recorder
            .load(file.clone(), device)
            .map_err(|e| invalid(&file, e))?;
        let weight_decay = schedule(&config, step).1;
        let net = BitNet::new(model, config.model.clone(), device);
        Ok(Self {
            net,
            optim: optimizer(weight_decay).load_record(record),
            stage2: weight_decay == 0.0,
            config,
            step,
        })
    }
}
