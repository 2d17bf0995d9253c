//! Every shipped model file runs forward and backward in the interpreter, with as many
//! parameters (and gradients) as the checker counts.

use mdc::base::rng::Rng;
use mdc::interp::{Engine, Executor};
use mdc::ops::Op;
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

/// The engine fuses each ResBlock's SiLU and time bias into the GroupNorm before them, and runs
/// the time projection earlier to do so: on every shipped model that changes no bit of the
/// outputs or gradients (the same arithmetic, summed in the same order) and holds no more memory.
#[test]
fn fusing_time_biases_into_group_norms_changes_no_bit() {
    let mut fused_somewhere = false;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/models")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let graph = mdc::model::load(&path).unwrap().graph;
        let batch = 3;
        let params = Params::init(&graph, 5);
        let views: Vec<&[f32]> = params.tensors.iter().map(|t| t.as_slice().unwrap()).collect();
        let mut rng = Rng::new(6);
        let x: Vec<f32> = (0..batch * graph.input_shape().numel()).map(|_| rng.normal() as f32).collect();
        let dy: Vec<f32> = (0..batch * graph.output_shape().numel()).map(|_| rng.normal() as f32).collect();
        let t = [3.0, 500.0, 999.0];
        let labels = graph.classes().map(|c| vec![0.0, c as f32, 1.0]);
        let run = |mut engine: Engine<f32>| {
            let inference = engine.forward(&views, &x, &t, labels.as_deref(), batch, false);
            let y = engine.forward(&views, &x, &t, labels.as_deref(), batch, true);
            let mut grads = params.zeros_like();
            let mut g: Vec<&mut [f32]> =
                grads.tensors.iter_mut().map(|t| t.as_slice_mut().unwrap()).collect();
            engine.backward(&views, &dy, &mut g);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
            let grad_bits: Vec<Vec<u32>> =
                grads.tensors.iter().map(|t| bits(t.as_slice().unwrap())).collect();
            (bits(&inference), bits(&y), grad_bits, engine.peak_bytes())
        };
        let fused = Engine::<f32>::new(graph.clone());
        let biases: Vec<usize> = (0..graph.nodes.len())
            .filter(|&id| matches!(graph.nodes[id].op, Op::AddChannelBias(_)))
            .collect();
        let fused_nodes = fused.fused_nodes();
        for b in &biases {
            assert!(fused_nodes.contains(b), "{}: {} not fused", path.display(), graph.nodes[*b].name);
        }
        fused_somewhere |= !biases.is_empty();
        let (a, b) = (run(fused), run(Engine::new(graph.clone()).unfused()));
        let name = path.display();
        assert!(a.0 == b.0, "{name}: inference outputs differ fused and unfused");
        assert!(a.1 == b.1, "{name}: training outputs differ fused and unfused");
        for (k, (ga, gb)) in a.2.iter().zip(&b.2).enumerate() {
            assert!(ga == gb, "{name}: gradient of {} differs fused and unfused", params.names[k]);
        }
        assert!(a.3 <= b.3, "{name}: fused peak {} bytes above unfused {}", a.3, b.3);
    }
    assert!(fused_somewhere, "no shipped model has a time bias to fuse");
}
