//! The settings table, the recipe and their checks.

use super::*;
use crate::diffusion::{Prediction, SamplerKind, ScheduleKind};
use crate::kernels::Precision;

#[test]
fn table_overrides_defaults_and_reports_every_problem() {
    let mut r = Recipe::new(TrainConfig::default(), Origin::Default);
    let t: toml::Table = "steps = 50\nlr = 2e-4\nschedule = \"cosine\"".parse().unwrap();
    r.apply_table(&t, Origin::ModelFile).unwrap();
    assert_eq!((r.config.steps, r.config.lr, r.config.schedule), (50, 2e-4, ScheduleKind::Cosine));
    assert_eq!(r.origins["steps"], Origin::ModelFile);
    assert_eq!(r.origins["batch"], Origin::Default);
    assert_eq!(r.config.warmup_steps(), 2);
    assert!(r.describe().contains("steps             50"));

    let bad: toml::Table =
        "stpes = 5\nlr = \"fast\"\nema_decay = 1.5\nschedule = \"cos\"\nzzz = 1".parse().unwrap();
    let problems = r.apply_table(&bad, Origin::ModelFile).unwrap_err();
    assert_eq!(problems.len(), 5, "{problems:?}");
    let all = problems.iter().map(|p| p.1.clone()).collect::<Vec<_>>().join("\n");
    assert!(all.contains("unknown training setting `stpes`; did you mean `steps`?"), "{all}");
    assert!(all.contains("`lr`: expected a number, found the string \"fast\""), "{all}");
    assert!(all.contains("`ema_decay`: expected a number in [0, 1), found 1.5"), "{all}");
    assert!(all.contains("expected \"linear\" or \"cosine\", found \"cos\""), "{all}");
    assert!(all.contains("unknown training setting `zzz` (known:"), "{all}");
}

#[test]
fn a_train_entry_is_checked_against_the_table() {
    let ok = check_setting("sample_eta", &toml::Value::Float(0.5));
    assert_eq!(ok, Ok(()));
    let e = check_setting("sample_eta", &toml::Value::Float(1.5)).unwrap_err();
    assert_eq!((e.unknown, e.message.as_str()), (false, "expected a number in [0, 1], found 1.5"));
    let e = check_setting("kernel", &toml::Value::Integer(3)).unwrap_err();
    assert!(e.unknown && e.help.unwrap().starts_with("the settings are steps, batch"));
    let e = check_setting("sampel_eta", &toml::Value::Integer(0)).unwrap_err();
    assert_eq!(e.help.as_deref(), Some("did you mean `sample_eta`?"));
}

#[test]
fn every_setting_has_a_default_within_its_limits_and_docs() {
    let c = TrainConfig::default();
    assert_eq!(c.check_ranges(), Ok(()));
    for s in SETTINGS {
        assert!(!c.show(s.name).is_empty() && !s.doc.is_empty(), "{}", s.name);
    }
    let keys: Vec<&str> = recipe_keys().collect();
    assert!(keys.contains(&"lr") && !keys.contains(&"steps") && !keys.contains(&"samples"));
    let t = settings_markdown();
    assert!(
        t.contains("| `batch` (`--batch`) | integer | 64 | an integer from 1 to 4096 | images per step |"),
        "{t}"
    );
    assert!(t.contains("| `warmup` (`--warmup`) | integer | auto |"), "{t}");
    assert!(t.contains("(0: off, plain MSE) (checkpoints from before this setting: 0) |"), "{t}");
}

#[test]
fn sizes_beyond_their_range_are_refused_from_every_source() {
    let mut r = Recipe::new(TrainConfig::default(), Origin::Default);
    let t: toml::Table =
        "batch = 100000000000000000\ntimesteps = 0\nsamples = 4097\ncheckpoint_every = 0\nsteps = -1"
            .parse()
            .unwrap();
    let all: Vec<String> =
        r.apply_table(&t, Origin::CommandLine).unwrap_err().into_iter().map(|p| p.1).collect();
    let all = all.join("\n");
    assert!(all.contains("`batch`: expected an integer from 1 to 4096, found 100000000000000000"), "{all}");
    assert!(all.contains("`timesteps`: expected an integer from 1 to 100000, found 0"), "{all}");
    assert!(all.contains("`samples`: expected an integer from 0 to 4096, found 4097"), "{all}");
    assert!(all.contains("`checkpoint_every`: expected a positive integer, found 0"), "{all}");
    assert!(all.contains("`steps`: expected a positive integer, found -1"), "{all}");
    assert_eq!(r.config, TrainConfig::default());

    // A recipe read back from a checkpoint is checked by the same ranges.
    for (key, edit) in [
        ("checkpoint_every", &(|c: &mut TrainConfig| c.checkpoint_every = 0) as &dyn Fn(&mut TrainConfig)),
        ("timesteps", &|c: &mut TrainConfig| c.timesteps = 0),
        ("batch", &|c: &mut TrainConfig| c.batch = 5000),
    ] {
        let mut c = TrainConfig::default();
        edit(&mut c);
        let e = c.check_ranges().unwrap_err();
        assert!(e.starts_with(&format!("`{key}`: expected")), "{e}");
        let e = Recipe::new(c, Origin::Checkpoint).validate().unwrap_err();
        assert!(e.starts_with(&format!("`{key}`: expected")), "{e}");
    }
    assert_eq!(TrainConfig::default().check_ranges(), Ok(()));
}

#[test]
fn recipes_from_older_checkpoints_keep_their_old_meaning() {
    let mut old = serde_json::to_value(TrainConfig::default()).unwrap();
    let keys =
        ["precision", "sampler", "sample_every", "min_snr_gamma", "prediction", "guide_at", "autoguidance"];
    for key in keys.into_iter().chain(["builtin_digits"]) {
        old.as_object_mut().unwrap().remove(key).expect("the key is serialised");
    }
    let c: TrainConfig = serde_json::from_value(old).unwrap();
    assert_eq!(
        (c.sampler, c.sample_every, c.min_snr_gamma, c.builtin_digits),
        (SamplerKind::Ddim, 0, 0.0, 1000)
    );
    // The other settings are read as written, and the legacy values differ from the defaults.
    assert_eq!(
        c,
        TrainConfig {
            precision: Precision::Fp32,
            min_snr_gamma: 0.0,
            sample_every: 0,
            builtin_digits: 1000,
            prediction: Prediction::Noise,
            guide_at: 0.0,
            autoguidance: 1.0,
            ..TrainConfig::default()
        }
    );
    assert_eq!(TrainConfig::legacy(), c);

    // A recipe JSON from before these settings, as an older mdc wrote it.
    let json = r#"{"steps":800,"batch":64,"lr":0.001,"warmup":null,"weight_decay":0.0,
        "adam_beta1":0.9,"adam_beta2":0.999,"clip_grad":1.0,"ema_decay":0.999,"schedule":"linear",
        "timesteps":1000,"seed":0,"data":"builtin","checkpoint_every":100,"samples":36,
        "sample_steps":100,"sample_eta":1.0}"#;
    let c: TrainConfig = serde_json::from_str(json).unwrap();
    assert_eq!((c.steps, c.lr, c.min_snr_gamma, c.builtin_digits), (800, 1e-3, 0.0, 1000));
    assert_eq!((c.sampler, c.sample_every, c.precision), (SamplerKind::Ddim, 0, Precision::Fp32));
    assert_eq!((c.prediction, c.guide_step(), c.autoguidance), (Prediction::Noise, None, 1.0));
    assert_eq!(c.check_ranges(), Ok(()));

    // A current recipe round-trips unchanged (a present key is never replaced by its legacy value).
    let now = TrainConfig::default();
    let back: TrainConfig = serde_json::from_value(serde_json::to_value(&now).unwrap()).unwrap();
    assert_eq!(back, now);
}

#[test]
fn autoguidance_max_t_must_fall_inside_the_schedule() {
    let mut r = Recipe::new(TrainConfig::default(), Origin::Default);
    let table: toml::Table = toml::from_str("autoguidance_max_t = 850").unwrap();
    r.apply_table(&table, Origin::ModelFile).unwrap();
    assert_eq!(r.validate(), Ok(()));
    assert_eq!(r.config.steering(), crate::diffusion::Steering { weight: 3.0, max_t: Some(850) });
    assert!(r.describe().contains("t <= 850"), "{}", r.describe());
    r.config.timesteps = 850;
    let e = r.validate().unwrap_err();
    assert!(e.contains("`autoguidance_max_t` (850) must be below the schedule's `timesteps` (850)"), "{e}");
    let table: toml::Table = toml::from_str("autoguidance_max_t = -1").unwrap();
    let e = r.apply_table(&table, Origin::ModelFile).unwrap_err();
    assert_eq!(e[0].0, "autoguidance_max_t");
}

#[test]
fn recipe_differences_name_the_changed_keys_only() {
    let a = TrainConfig::default();
    let mut b = a.clone();
    b.steps = 5;
    b.samples = 4;
    assert!(a.recipe_differences(&b).is_empty());
    b.lr = 0.5;
    assert_eq!(a.recipe_differences(&b), vec!["lr: 0.002 -> 0.5".to_string()]);
}
