//! Every shipped model file runs forward and backward in the interpreter, with as many
//! parameters (and gradients) as the checker counts.

use mdc::base::rng::Rng;
use mdc::interp::Executor;
use mdc::params::Params;
use ndarray::{Array1, Array4};

#[test]
fn every_model_file_trains_one_step() {
    let mut seen = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/models")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let model = mdc::model::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let graph = model.graph;
        let params = Params::init(&graph, 3);
        assert_eq!(params.numel(), graph.param_count(), "{}", path.display());
        let (c, h, w) = graph.input_shape().as_image().unwrap();
        let mut rng = Rng::new(4);
        let x = Array4::from_shape_simple_fn((2, c, h, w), || rng.normal() as f32);
        let t = Array1::from_vec(vec![10.0, 900.0]);
        let mut exec = Executor::new(graph.clone());
        let y = exec.forward_train(&params, x.view(), t.view());
        assert_eq!(y.shape(), &[2, c, h, w]);
        assert!(y.iter().all(|v| v.is_finite()), "{}: non-finite output", path.display());
        let mut grads = params.zeros_like();
        exec.backward(&params, y.view(), &mut grads);
        assert_eq!(grads.numel(), graph.param_count());
        let nonzero = grads.tensors.iter().filter(|g| g.iter().any(|&v| v != 0.0)).count();
        assert_eq!(nonzero, grads.tensors.len(), "{}: some parameters got no gradient", path.display());
        seen += 1;
    }
    assert!(seen >= 2, "expected the shipped models, found {seen}");
}
