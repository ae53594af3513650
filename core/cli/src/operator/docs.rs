//! `corral completions SHELL` and `corral man [--out DIR]`, generated from
//! the clap definitions of the whole binary.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::out;

/// `corral completions`.
#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell. For bash:
    /// `corral completions bash > /etc/bash_completion.d/corral`.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `corral man`.
#[derive(clap::Args)]
pub struct ManArgs {
    /// The directory the pages are written to (created when missing): one
    /// `corral.1` and one `corral-<command>.1` per command.
    #[arg(long, value_name = "DIR", default_value = "man")]
    pub out: PathBuf,
}

/// Writes the completion script of `cmd` for the shell to stdout.
pub fn completions(args: CompletionsArgs, mut cmd: clap::Command) {
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "corral", &mut buf);
    out(&String::from_utf8_lossy(&buf));
}

/// Writes a man page for `cmd` and every visible subcommand; prints their
/// paths.
pub fn man(args: ManArgs, cmd: clap::Command) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("--out {}: cannot create the directory", args.out.display()))?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut names = Vec::new();
    page_names(&cmd, &mut names);
    clap_mangen::generate_to(cmd, &args.out)
        .with_context(|| format!("--out {}: cannot write the man pages", args.out.display()))?;
    for name in &names {
        out(&format!(
            "{}\n",
            args.out.join(format!("{name}.1")).display()
        ));
    }
    out(&format!(
        "{} man pages written (read one with: man -l {})\n",
        names.len(),
        args.out.join("corral.1").display()
    ));
    Ok(())
}

/// The page names clap_mangen writes: `corral`, `corral-<sub>`, ... for
/// every command that is not hidden.
fn page_names(cmd: &clap::Command, names: &mut Vec<String>) {
    names.push(cmd.get_display_name().unwrap_or(cmd.get_name()).to_string());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        page_names(sub, names);
    }
}
