//! `repos`: the repositories the platform knows.

use crate::args::{Format, Global, ReposCommand};
use crate::output::print_rows;
use crate::setup::open_shared;
use anyhow::{Context, anyhow, bail};
use scanner_store::{NewRepository, Store};
use std::collections::HashMap;
use std::process::ExitCode;

/// Runs a `repos` command.
pub(crate) fn run(
    global: &Global,
    command: ReposCommand,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let store = open_shared(global, command_writes_repos(&command))?;
    repos(&*store, command, format)?;
    Ok(ExitCode::SUCCESS)
}

/// Whether a `repos` command writes to the database.
fn command_writes_repos(command: &ReposCommand) -> bool {
    !matches!(command, ReposCommand::List | ReposCommand::Rules)
}

/// Adds, imports, removes or lists repositories in `store`.
fn repos(store: &dyn Store, command: ReposCommand, format: Format) -> anyhow::Result<()> {
    match command {
        ReposCommand::Add { urls, image } => {
            if !image.is_empty() && urls.len() != 1 {
                bail!("--image maps images to one repository: give exactly one URL with it");
            }
            let repositories = urls
                .iter()
                .map(|url| NewRepository::parse(url, &image))
                .collect::<Result<Vec<_>, _>>()?;
            store.add_repositories(&repositories)?;
            eprintln!(
                "added {} repositor{}",
                urls.len(),
                if urls.len() == 1 { "y" } else { "ies" }
            );
        }
        ReposCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            // Every line is checked before anything is stored, and the
            // store adds them in one transaction: a bad line imports nothing.
            let mut repositories = Vec::new();
            // image → (line, repository) of its first mapping in the file.
            let mut mapped: HashMap<String, (usize, String)> = HashMap::new();
            for (n, line) in text.lines().enumerate() {
                let line_no = n + 1;
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let Some(url) = parts.next() else { continue };
                let images: Vec<String> = parts.map(str::to_string).collect();
                let repository = NewRepository::parse(url, &images).map_err(|e| {
                    anyhow!("{}:{line_no}: {e}; nothing was imported", file.display())
                })?;
                for image in repository.image_keys() {
                    match mapped.get(image) {
                        Some((first, other)) if other != repository.url_norm() => bail!(
                            "{}:{line_no}: image `{image}` is mapped to {other} on line {first} already; nothing was imported",
                            file.display()
                        ),
                        Some(_) => {}
                        None => {
                            mapped.insert(
                                image.to_string(),
                                (line_no, repository.url_norm().to_string()),
                            );
                        }
                    }
                }
                repositories.push(repository);
            }
            store
                .add_repositories(&repositories)
                .with_context(|| format!("importing {}; nothing was imported", file.display()))?;
            eprintln!("imported {} repositories", repositories.len());
        }
        ReposCommand::Remove { url } => {
            store.remove_repository(&url)?;
            eprintln!("removed {url}");
        }
        ReposCommand::Rules => {
            let rows = store.image_mappings()?;
            let headers = ["image", "repository", "rule", "findings"];
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.image.clone(),
                        r.repository.clone(),
                        r.rule.as_str().to_string(),
                        r.findings.to_string(),
                    ]
                })
                .collect();
            print_rows(format, &headers, &table, || {
                Ok(serde_json::to_string_pretty(&rows)?)
            })?;
        }
        ReposCommand::List => {
            let rows = store.repositories()?;
            let headers = ["url", "name", "images"];
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| vec![r.url.clone(), r.name.clone(), r.images.join(" ")])
                .collect();
            print_rows(format, &headers, &table, || {
                Ok(serde_json::to_string_pretty(&rows)?)
            })?;
        }
    }
    Ok(())
}
