//! What an exported model records about itself (ONNX `metadata_props`), so that sampling from
//! the .onnx file needs nothing else: the image it works on, the noise schedule it was trained
//! with and where it came from. Written by the exporter, read back by `runtime`.

use std::collections::HashMap;

use crate::base::limits::{MAX_CHANNELS, MAX_CLASSES, MAX_SIZE};
use crate::diffusion::{NoiseSchedule, Prediction, ScheduleKind};
use crate::recipe::{Origin, Recipe, TrainConfig};

/// The most timesteps a model's metadata may record (more is a damaged or foreign file): the
/// training recipe's limit.
pub const MAX_TIMESTEPS: usize = crate::base::limits::MAX_TIMESTEPS as usize;

/// The DDPM noise schedule a model was trained with, and what its output predicts: what
/// `mdc train` uses (the [train] keys `schedule`, `timesteps` and `prediction`, or what the
/// checkpoint records).
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleInfo {
    /// `linear` or `cosine`.
    pub name: String,
    pub timesteps: usize,
    pub prediction: Prediction,
}

impl Default for ScheduleInfo {
    /// mdc's training default: the DDPM paper's linear schedule over 1000 steps.
    fn default() -> Self {
        ScheduleInfo::of(&TrainConfig::default())
    }
}

impl ScheduleInfo {
    /// Reads `schedule`, `timesteps` and `prediction` from a model file's `[train]` table, each
    /// falling back to the default when absent. A wrong type or an unknown value is an error.
    pub fn from_train_table(train: Option<&toml::Table>) -> Result<ScheduleInfo, String> {
        let mut recipe = Recipe::new(TrainConfig::default(), Origin::ModelFile);
        for key in ["schedule", "timesteps", "prediction"] {
            if let Some(v) = train.and_then(|t| t.get(key)) {
                recipe.set(key, v, Origin::ModelFile).map_err(|e| format!("[train] {e}"))?;
            }
        }
        Ok(ScheduleInfo::of(&recipe.config))
    }

    /// The schedule a training recipe uses.
    pub fn of(config: &TrainConfig) -> ScheduleInfo {
        ScheduleInfo {
            name: config.schedule.name().to_string(),
            timesteps: config.timesteps,
            prediction: config.prediction,
        }
    }

    /// The schedule as `mdc train` uses it (linear 1e-4..0.02 scaled by 1000/T, or cosine).
    pub fn noise_schedule(&self) -> Result<NoiseSchedule, String> {
        let kind = ScheduleKind::parse(&self.name).ok_or_else(|| {
            format!("unknown noise schedule {:?}: expected \"linear\" or \"cosine\"", self.name)
        })?;
        if self.timesteps == 0 {
            return Err("the noise schedule needs at least one timestep".into());
        }
        Ok(NoiseSchedule::new(kind, self.timesteps))
    }

    /// beta_t for t in 0..timesteps.
    pub fn betas(&self) -> Result<Vec<f64>, String> {
        Ok(self.noise_schedule()?.betas)
    }
}

/// Everything mdc writes into an exported model's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Version of the mdc that exported the file.
    pub mdc_version: String,
    /// The model file it was exported from (file name only) and the sha256 (hex) of its bytes,
    /// as training checkpoints record it (`model_hash`).
    pub model_file: String,
    pub model_hash: String,
    /// Where the weights came from (file name and which set, or `random init`).
    pub weights: String,
    pub schedule: ScheduleInfo,
    /// The image the model was built for: [C, H, W].
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// The classes of a class-conditional model (input `y`), None for an unconditional one.
    pub classes: Option<ClassInfo>,
    /// Autoguidance built into the graph, None for the model alone.
    pub autoguidance: Option<AutoguidanceInfo>,
}

/// The autoguidance an export computes: its output is guide + w (model - guide), as `steering`
/// says (the model alone for an image without a class label above its `max_t`).
#[derive(Debug, Clone, PartialEq)]
pub struct AutoguidanceInfo {
    pub steering: crate::diffusion::Steering,
    /// The training step whose EMA weights are the guide.
    pub guide_step: u64,
}

/// What a conditional model's labels mean.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassInfo {
    /// Real classes, labels 0..count-1; the null label ("no class") is `count`.
    pub count: usize,
    /// The class names in label order, when the training data named them (else empty).
    pub names: Vec<String>,
}

impl ClassInfo {
    pub fn null(&self) -> usize {
        self.count
    }

    /// Class `k` as a person reads it: its name, or its number.
    pub fn name(&self, k: usize) -> String {
        self.names.get(k).cloned().unwrap_or_else(|| k.to_string())
    }
}

/// Metadata keys, one place so writer and reader agree.
pub mod keys {
    pub const MDC_VERSION: &str = "mdc_version";
    pub const MODEL_FILE: &str = "model_file";
    pub const MODEL_HASH: &str = "model_hash";
    pub const WEIGHTS: &str = "weights";
    pub const SCHEDULE: &str = "schedule";
    pub const TIMESTEPS: &str = "timesteps";
    /// `noise` or `velocity`: what the output is. Absent in exports from before it existed,
    /// which predict the noise.
    pub const PREDICTION: &str = "prediction";
    /// Not read back (derived from the two above), for other clients: the first and last beta
    /// and every beta_t, comma-separated.
    pub const BETA_START: &str = "beta_start";
    pub const BETA_END: &str = "beta_end";
    pub const BETAS: &str = "betas";
    pub const CHANNELS: &str = "image_channels";
    pub const HEIGHT: &str = "image_height";
    pub const WIDTH: &str = "image_width";
    /// Not read back: tells other clients how to feed the model.
    pub const INPUTS: &str = "inputs";
    pub const OUTPUT: &str = "output";
    /// Conditional models only: the number of classes, the null label's index (the same
    /// number, written out for other clients) and the class names as a JSON list.
    pub const CLASSES: &str = "classes";
    pub const NULL_LABEL: &str = "null_label";
    pub const CLASS_NAMES: &str = "class_names";
    /// Autoguided exports only: the weight w built into the output and the step of the guide;
    /// and, where the steering of images without a class label stops short of the noisiest
    /// steps, the last timestep it steers them at.
    pub const AUTOGUIDANCE: &str = "autoguidance";
    pub const GUIDE_STEP: &str = "guide_step";
    pub const AUTOGUIDANCE_MAX_T: &str = "autoguidance_max_t";
}

/// Human-readable description of the model's signature, stored under [`keys::INPUTS`].
pub const INPUTS_DESCRIPTION: &str =
    "x: float32 [N, C, H, W] noisy images; t: float32 [N] timesteps (0 .. timesteps-1, not normalised)";
pub const OUTPUT_DESCRIPTION: &str = "eps: float32 [N, C, H, W] predicted noise (epsilon)";
/// [`OUTPUT_DESCRIPTION`] for a model that predicts the velocity. The output keeps its name, so
/// a client finds it the same way in every mdc export and reads `prediction` to interpret it.
pub const VELOCITY_OUTPUT_DESCRIPTION: &str = "eps: float32 [N, C, H, W] predicted velocity \
     v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x0, not the noise (metadata `prediction`); \
     x0 = sqrt(alpha_bar_t) x - sqrt(1 - alpha_bar_t) v, eps = sqrt(1 - alpha_bar_t) x + sqrt(alpha_bar_t) v";
/// What a conditional model's `y` is, added to [`INPUTS_DESCRIPTION`].
pub const LABEL_DESCRIPTION: &str = "y: int64 [N] class labels (0 .. classes-1; null_label = classes for \
     no class: classifier-free guidance runs both and takes eps_null + S (eps_class - eps_null))";

impl ModelInfo {
    /// The image the model was exported for, [C, H, W] (what samplers draw).
    pub fn image(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }

    /// The (key, value) pairs written into the ONNX model.
    pub fn to_props(&self) -> Result<Vec<(String, String)>, String> {
        use keys::*;
        let s = &self.schedule;
        let betas = s.betas()?;
        let listed: Vec<String> = betas.iter().map(|b| format!("{b:e}")).collect();
        Ok([
            (MDC_VERSION, self.mdc_version.clone()),
            (MODEL_FILE, self.model_file.clone()),
            (MODEL_HASH, self.model_hash.clone()),
            (WEIGHTS, self.weights.clone()),
            (SCHEDULE, s.name.clone()),
            (TIMESTEPS, s.timesteps.to_string()),
            (PREDICTION, s.prediction.to_string()),
            (BETA_START, format!("{:e}", betas[0])),
            (BETA_END, format!("{:e}", betas[betas.len() - 1])),
            (BETAS, listed.join(",")),
            (CHANNELS, self.channels.to_string()),
            (HEIGHT, self.height.to_string()),
            (WIDTH, self.width.to_string()),
            (INPUTS, self.inputs_description()),
            (OUTPUT, self.output_description().to_string()),
        ]
        .into_iter()
        .chain(self.autoguidance.iter().flat_map(|a| {
            [(AUTOGUIDANCE, a.steering.weight.to_string()), (GUIDE_STEP, a.guide_step.to_string())]
        }))
        .chain(
            self.autoguidance
                .iter()
                .filter_map(|a| a.steering.max_t)
                .map(|t| (AUTOGUIDANCE_MAX_T, t.to_string())),
        )
        .chain(self.classes.iter().flat_map(|c| {
            [
                (CLASSES, c.count.to_string()),
                (NULL_LABEL, c.null().to_string()),
                (CLASS_NAMES, serde_json::to_string(&c.names).expect("strings serialise")),
            ]
        }))
        .map(|(k, v)| (k.to_string(), v))
        .collect())
    }

    /// The model's output in words (also in the ONNX doc string).
    pub fn output_description(&self) -> &'static str {
        match self.schedule.prediction {
            Prediction::Noise => OUTPUT_DESCRIPTION,
            Prediction::Velocity => VELOCITY_OUTPUT_DESCRIPTION,
        }
    }

    /// The model's inputs in words (also the ONNX doc string).
    pub fn inputs_description(&self) -> String {
        match self.classes {
            Some(_) => format!("{INPUTS_DESCRIPTION}; {LABEL_DESCRIPTION}"),
            None => INPUTS_DESCRIPTION.to_string(),
        }
    }

    /// Reads the metadata back; `origin` names the file in messages. A model not exported by mdc
    /// (missing keys) is an error that says which key is missing.
    pub fn from_props(props: &HashMap<String, String>, origin: &str) -> Result<ModelInfo, String> {
        use keys::*;
        let get = |k: &str| -> Result<String, String> {
            props.get(k).cloned().ok_or_else(|| {
                format!(
                    "{origin}: metadata key `{k}` is missing (was this model exported by `mdc export onnx`?)"
                )
            })
        };
        // A number in `min..=max`: the file may be foreign or edited, and these size allocations.
        let num = |k: &str, min: usize, max: usize| -> Result<usize, String> {
            let v = get(k)?;
            match v.trim().parse::<usize>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                Ok(_) => {
                    Err(format!("{origin}: metadata `{k}` = {v:?} is out of range: expected {min} to {max}"))
                }
                Err(_) => Err(format!("{origin}: metadata `{k}` = {v:?} is not a valid number")),
            }
        };
        let mdc_version = get(MDC_VERSION)?;
        let schedule = get(SCHEDULE)?;
        if ScheduleKind::parse(&schedule).is_none() {
            return Err(format!(
                "{origin}: metadata `{SCHEDULE}` = {schedule:?} is not a noise schedule: expected \"linear\" or \"cosine\""
            ));
        }
        let prediction = match props.get(PREDICTION) {
            None => Prediction::Noise,
            Some(p) => Prediction::parse(p).ok_or_else(|| {
                format!("{origin}: metadata `{PREDICTION}` = {p:?} is not a prediction: expected \"noise\" or \"velocity\"")
            })?,
        };
        let classes = match props.get(CLASSES) {
            None => None,
            Some(_) => {
                let count = num(CLASSES, 1, MAX_CLASSES)?;
                let names: Vec<String> = match props.get(CLASS_NAMES) {
                    None => Vec::new(),
                    Some(v) => serde_json::from_str(v).map_err(|e| {
                        format!("{origin}: metadata `{CLASS_NAMES}` is not a JSON list of names: {e}")
                    })?,
                };
                if !names.is_empty() && names.len() != count {
                    return Err(format!(
                        "{origin}: metadata `{CLASS_NAMES}` lists {} names for {count} classes",
                        names.len()
                    ));
                }
                Some(ClassInfo { count, names })
            }
        };
        let autoguidance = match props.get(AUTOGUIDANCE) {
            None => None,
            Some(w) => {
                let weight = w.trim().parse::<f32>().ok().filter(|w| w.is_finite()).ok_or_else(|| {
                    format!("{origin}: metadata `{AUTOGUIDANCE}` = {w:?} is not a valid number")
                })?;
                let max_t = match props.get(AUTOGUIDANCE_MAX_T) {
                    None => None,
                    Some(_) => Some(num(AUTOGUIDANCE_MAX_T, 0, usize::MAX)? as u64),
                };
                let steering = crate::diffusion::Steering { weight, max_t };
                Some(AutoguidanceInfo { steering, guide_step: num(GUIDE_STEP, 1, usize::MAX)? as u64 })
            }
        };
        Ok(ModelInfo {
            classes,
            autoguidance,
            mdc_version,
            model_file: props.get(MODEL_FILE).cloned().unwrap_or_default(),
            model_hash: props.get(MODEL_HASH).cloned().unwrap_or_default(),
            weights: props.get(WEIGHTS).cloned().unwrap_or_default(),
            schedule: ScheduleInfo {
                name: schedule,
                timesteps: num(TIMESTEPS, 1, MAX_TIMESTEPS)?,
                prediction,
            },
            channels: num(CHANNELS, 1, MAX_CHANNELS)?,
            height: num(HEIGHT, 1, MAX_SIZE)?,
            width: num(WIDTH, 1, MAX_SIZE)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn props_round_trip() {
        let info = ModelInfo {
            mdc_version: "0.1.0".into(),
            model_file: "unet.toml".into(),
            model_hash: "ab12".into(),
            weights: "ckpt.safetensors (ema)".into(),
            schedule: ScheduleInfo {
                name: "cosine".into(),
                timesteps: 500,
                prediction: Prediction::Velocity,
            },
            channels: 3,
            height: 32,
            width: 32,
            classes: None,
            autoguidance: Some(AutoguidanceInfo {
                steering: crate::diffusion::Steering { weight: 2.5, max_t: Some(850) },
                guide_step: 725,
            }),
        };
        let props: HashMap<String, String> = info.to_props().unwrap().into_iter().collect();
        assert_eq!(props[keys::BETAS].split(',').count(), 500);
        assert_eq!(ModelInfo::from_props(&props, "m.onnx").unwrap(), info);
        let mut missing = props.clone();
        missing.remove(keys::TIMESTEPS);
        let err = ModelInfo::from_props(&missing, "m.onnx").unwrap_err();
        assert!(err.contains("`timesteps` is missing"), "{err}");
        assert!(props[keys::OUTPUT].contains("predicted velocity"), "{}", props[keys::OUTPUT]);
        // Exports from before the key existed predict the noise.
        let mut older = props.clone();
        older.remove(keys::PREDICTION);
        assert_eq!(ModelInfo::from_props(&older, "m.onnx").unwrap().schedule.prediction, Prediction::Noise);
        // ... and autoguided ones from before `autoguidance_max_t` steer at every step.
        older.remove(keys::AUTOGUIDANCE_MAX_T);
        assert_eq!(
            ModelInfo::from_props(&older, "m.onnx").unwrap().autoguidance.unwrap().steering.max_t,
            None
        );

        let names = vec!["zero, or nothing".to_string(), "one \"1\"".to_string()];
        let cond = ModelInfo { classes: Some(ClassInfo { count: 2, names }), ..info };
        let props: HashMap<String, String> = cond.to_props().unwrap().into_iter().collect();
        assert_eq!((props[keys::CLASSES].as_str(), props[keys::NULL_LABEL].as_str()), ("2", "2"));
        assert_eq!(ModelInfo::from_props(&props, "m.onnx").unwrap(), cond);
        let mut wrong = props.clone();
        wrong.insert(keys::CLASS_NAMES.into(), "[\"a\"]".into());
        let err = ModelInfo::from_props(&wrong, "m.onnx").unwrap_err();
        assert!(err.contains("lists 1 names for 2 classes"), "{err}");
    }

    #[test]
    fn out_of_range_props_are_refused() {
        let info = ModelInfo {
            mdc_version: "0.1.0".into(),
            model_file: "unet.toml".into(),
            model_hash: "ab12".into(),
            weights: "random init".into(),
            schedule: ScheduleInfo::default(),
            channels: 1,
            height: 8,
            width: 8,
            classes: None,
            autoguidance: None,
        };
        let props: HashMap<String, String> = info.to_props().unwrap().into_iter().collect();
        for (key, value, expected) in [
            (
                keys::WIDTH,
                "1000000000000",
                "m.onnx: metadata `image_width` = \"1000000000000\" is out of range",
            ),
            (keys::HEIGHT, "0", "m.onnx: metadata `image_height` = \"0\" is out of range"),
            (keys::CHANNELS, "70000", "m.onnx: metadata `image_channels` = \"70000\" is out of range"),
            (
                keys::TIMESTEPS,
                "100001",
                "m.onnx: metadata `timesteps` = \"100001\" is out of range: expected 1 to 100000",
            ),
            (
                keys::SCHEDULE,
                "quadratic",
                "m.onnx: metadata `schedule` = \"quadratic\" is not a noise schedule",
            ),
            (keys::PREDICTION, "x0", "m.onnx: metadata `prediction` = \"x0\" is not a prediction"),
        ] {
            let mut edited = props.clone();
            edited.insert(key.to_string(), value.to_string());
            let err = ModelInfo::from_props(&edited, "m.onnx").unwrap_err();
            assert!(err.contains(expected), "{key}: {err}");
        }
    }

    #[test]
    fn schedule_from_train_table() {
        let t: toml::Table = toml::from_str("schedule = \"cosine\"\ntimesteps = 200").unwrap();
        let s = ScheduleInfo::from_train_table(Some(&t)).unwrap();
        assert_eq!((s.name.as_str(), s.timesteps), ("cosine", 200));
        assert_eq!(ScheduleInfo::from_train_table(None).unwrap(), ScheduleInfo::default());
        let bad: toml::Table = toml::from_str("timesteps = \"many\"").unwrap();
        assert!(ScheduleInfo::from_train_table(Some(&bad)).unwrap_err().contains("timesteps"));
        let unknown: toml::Table = toml::from_str("schedule = \"quadratic\"").unwrap();
        assert!(ScheduleInfo::from_train_table(Some(&unknown)).unwrap_err().contains("quadratic"));
        let v: toml::Table = toml::from_str("prediction = \"velocity\"").unwrap();
        assert_eq!(ScheduleInfo::from_train_table(Some(&v)).unwrap().prediction, Prediction::Velocity);
        let x0: toml::Table = toml::from_str("prediction = \"x0\"").unwrap();
        let err = ScheduleInfo::from_train_table(Some(&x0)).unwrap_err();
        assert!(err.contains("prediction") && err.contains("velocity"), "{err}");
    }

    fn linear_info() -> ScheduleInfo {
        ScheduleInfo { name: "linear".into(), timesteps: 1000, prediction: Prediction::Noise }
    }

    #[test]
    fn betas_follow_the_training_definitions() {
        let linear = linear_info().betas().unwrap();
        assert_eq!(linear.len(), 1000);
        assert!((linear[0] - 1e-4).abs() < 1e-15 && (linear[999] - 0.02).abs() < 1e-15);
        // Fewer steps: the same range scaled by 1000/T.
        let short = ScheduleInfo { timesteps: 100, ..linear_info() }.betas().unwrap();
        assert!((short[0] - 1e-3).abs() < 1e-15 && (short[99] - 0.2).abs() < 1e-12);
        let cosine = ScheduleInfo { name: "cosine".into(), ..linear_info() }.betas().unwrap();
        let alpha_bar_end: f64 = cosine.iter().map(|b| 1.0 - b).product();
        assert!(cosine.iter().all(|&b| b > 0.0 && b <= 0.999) && alpha_bar_end < 1e-4);
    }
}
