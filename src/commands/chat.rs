//! `bitnet chat`: an interactive conversation on stdin/stdout in the model's chat format, keeping the KV cache
//! between turns. `/reset` forgets the conversation, `/exit` (or end of input) quits.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Result;
use bitnet_burn::text::chat::Chat;
use bitnet_burn::TernaryBackend;

use crate::backend::BackendTask;
use crate::model_args::ModelArgs;
use crate::sampling_args::SamplingArgs;
use crate::text_args::{load_chat_template, TextArgs};

/// Arguments of `bitnet chat`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    text: TextArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// A system message that opens the conversation.
    #[arg(long)]
    system: Option<String>,
    /// A Jinja chat template that overrides the model's.
    #[arg(long)]
    chat_template: Option<PathBuf>,
    /// Print speed after each reply.
    #[arg(short, long)]
    verbose: bool,
}

impl BackendTask for Args {
    type Output = Result<()>;
    fn run<B: TernaryBackend>(self, device: B::Device, backend: &'static str) -> Result<()> {
        let tokenizer = self.text.load_tokenizer(&self.model.model)?;
        let template =
            load_chat_template(&self.model.model, self.chat_template.as_deref(), &tokenizer)?;
        let model = self.model.load::<B>(&device)?;
        let opts = self.sampling.options(self.text.act(), true)?;
        let mut cache = model.new_cache(1, model.config.context_length);
        let interactive = std::io::stdin().is_terminal();
        if interactive {
            eprintln!(
                "chat template: {}; /reset forgets the conversation, /exit quits",
                template.origin()
            );
        }
        let mut chat = Chat::new(template, self.system.clone());
        let mut failed = 0;
        let mut lines = std::io::stdin().lock().lines();
        loop {
            if interactive {
                eprint!("> ");
            }
            let Some(line) = lines.next().transpose()? else {
                break;
            };
            match line.trim() {
                "" => continue,
                "/exit" | "/quit" => break,
                "/reset" => {
                    chat.reset(&mut cache);
                    eprintln!("(conversation reset)");
                    continue;
                }
                _ => {}
            }
            let mut stdout = std::io::stdout().lock();
            let reply = chat.send(&model, &tokenizer, &mut cache, &line, &opts, |piece| {
                let _ = stdout
                    .write_all(piece.as_bytes())
                    .and_then(|_| stdout.flush());
            });
            writeln!(stdout)?;
            drop(stdout);
            match reply {
                Ok(g) if self.verbose => eprintln!("{}", super::run::summary(&g, backend)),
                Ok(_) => {}
                Err(e) => {
                    failed += 1;
                    eprintln!("error: {e}");
                }
            }
        }
        anyhow::ensure!(failed == 0, "{failed} message(s) failed");
        Ok(())
    }
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    args.model.clone().run(args)
}
