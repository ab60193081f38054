//! Hub files on the command line: `hf:OWNER/NAME/FILE` wherever a model path is accepted, and the byte progress
//! bar downloads show.

use std::path::PathBuf;

use bitnet_burn::io::hub::{DownloadProgress, Hub, HubFile};
use indicatif::{ProgressBar, ProgressStyle};

/// A clap value parser: a local path as given, or a Hub file resolved to its cached copy (downloaded if absent).
pub fn model_path(arg: &str) -> Result<PathBuf, String> {
    match HubFile::parse(arg) {
        None => Ok(PathBuf::from(arg)),
        Some(spec) => {
            let spec = spec.map_err(|e| e.to_string())?;
            let hub = Hub::from_env().map_err(|e| e.to_string())?;
            let bar = byte_bar(&spec.file);
            let path = hub
                .get(&spec, |p| show(&bar, p))
                .map_err(|e| e.to_string())?;
            bar.finish_and_clear();
            Ok(path)
        }
    }
}

/// A progress bar in bytes for downloading `file` (drawn only on a terminal).
pub fn byte_bar(file: &str) -> ProgressBar {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}, {eta} left",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_message(file.to_string());
    bar
}

/// Moves `bar` to `p`.
pub fn show(bar: &ProgressBar, p: DownloadProgress) {
    bar.set_length(p.total);
    bar.set_position(p.done);
}
