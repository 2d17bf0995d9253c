//! `mdc export train-step MODEL.toml -o step.onnx`: the whole training step of the model under
//! its `[train]` recipe, as one ONNX graph (docs/train-step.md). The weights are inputs, so no
//! --weights are read.

use std::process::ExitCode;

use anyhow::Context;
use prost::Message;

use super::export::Args;
use crate::check::table::group_digits;
use crate::train::step_recipe;
use crate::train_step::{self, names, FlatLayout};

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let model = crate::model::load(&args.model)?;
    let name = args.model.display();
    if args.weights.is_some()
        || args.no_ema
        || args.autoguidance.is_some()
        || args.autoguidance_max_t.is_some()
    {
        anyhow::bail!(super::UsageError(
            "export train-step: the weights and optimizer state are inputs of the step graph; --weights, --no-ema \
             and --autoguidance do not apply"
                .into()
        ));
    }
    let recipe = super::train::model_recipe(&model, &name.to_string())?;
    let step = train_step::compile(&model.graph, &step_recipe(&recipe.config))
        .with_context(|| format!("cannot compile the training step of {name}"))?;
    let bytes = step.encode_to_vec();
    crate::base::fsutil::write_file(&args.output, &bytes)?;
    let layout = FlatLayout::of(&model.graph);
    let nodes = step.graph.as_ref().map_or(0, |g| g.node.len());
    println!(
        "wrote {} ({:.1} MB, {nodes} nodes): the training step of {name}; state vectors {} of {} values \
         (parameters in the model's order); inputs also {} [5], x0, noise, t{}, {} [5, N]; outputs the new state, {}, {}, {}",
        args.output.display(),
        bytes.len() as f64 / 1e6,
        names::STATE.map(|(i, _)| i).join(", "),
        group_digits(layout.len() as u64),
        names::STEP_SCALARS,
        if model.graph.label.is_some() { ", y" } else { "" },
        names::COEFFICIENTS,
        names::LOSS,
        names::GRAD_NORM,
        names::IMAGE_MSE,
    );
    Ok(ExitCode::SUCCESS)
}
