//! The vocabulary to the wire and back. Glue only: every rule is in the types' own modules, and a
//! message from the wire passes the same validation as a sweep file.

use crate::dataset::{DatasetRef, parse_validation};
use crate::metrics::{EpochMetrics, EpochSummary, TrialResult};
use crate::state::JobStatus;
use crate::trial::Hyperparameters;
use crate::{Error, v1 as pb};

impl From<&EpochMetrics> for pb::EpochMetrics {
    fn from(e: &EpochMetrics) -> Self {
        pb::EpochMetrics {
            epoch: e.epoch,
            lr: e.lr,
            train_loss: e.train_loss,
            train_acc: e.train_acc,
            val_loss: e.val_loss,
            val_acc: e.val_acc,
            test_loss: e.test_loss,
            test_acc: e.test_acc,
            seconds: e.seconds,
            samples_per_second: e.samples_per_second,
        }
    }
}

impl From<&pb::EpochMetrics> for EpochMetrics {
    fn from(e: &pb::EpochMetrics) -> Self {
        EpochMetrics {
            epoch: e.epoch,
            lr: e.lr,
            train_loss: e.train_loss,
            train_acc: e.train_acc,
            val_loss: e.val_loss,
            val_acc: e.val_acc,
            test_loss: e.test_loss,
            test_acc: e.test_acc,
            seconds: e.seconds,
            samples_per_second: e.samples_per_second,
        }
    }
}

impl From<&TrialResult> for pb::TrialResult {
    fn from(r: &TrialResult) -> Self {
        pb::TrialResult {
            params: r.params,
            test_acc: r.test_acc,
            best_epoch: r.best_epoch,
            best_test_acc: r.best_test_acc,
        }
    }
}

impl From<&pb::TrialResult> for TrialResult {
    fn from(r: &pb::TrialResult) -> Self {
        TrialResult {
            params: r.params,
            test_acc: r.test_acc,
            best_epoch: r.best_epoch,
            best_test_acc: r.best_test_acc,
        }
    }
}

impl From<&EpochSummary> for pb::EpochSummary {
    fn from(s: &EpochSummary) -> Self {
        pb::EpochSummary {
            best_val_loss: s.best_val_loss,
            best_val_acc: s.best_val_acc,
            train_seconds: s.train_seconds,
            samples_per_second: s.samples_per_second,
            final_train_loss: s.final_train_loss,
            final_test_loss: s.final_test_loss,
        }
    }
}

impl From<&DatasetRef> for pb::DatasetRef {
    fn from(d: &DatasetRef) -> Self {
        pb::DatasetRef {
            spec: d.spec.clone(),
            sha256: d.sha256.clone(),
            size_bytes: d.bytes,
            synthetic: d.synthetic,
            validation: d.validation.as_str().to_string(),
        }
    }
}

impl TryFrom<&pb::DatasetRef> for DatasetRef {
    type Error = Error;

    fn try_from(d: &pb::DatasetRef) -> Result<Self, Error> {
        if d.sha256.is_empty() {
            return Err(Error::Missing("dataset.sha256"));
        }
        Ok(DatasetRef {
            spec: d.spec.clone(),
            sha256: d.sha256.clone(),
            bytes: d.size_bytes,
            synthetic: d.synthetic,
            validation: parse_validation(&d.validation)?,
        })
    }
}

impl From<JobStatus> for pb::JobState {
    fn from(s: JobStatus) -> Self {
        match s {
            JobStatus::Queued => pb::JobState::Queued,
            JobStatus::Leased => pb::JobState::Leased,
            JobStatus::Done => pb::JobState::Done,
            JobStatus::Failed => pb::JobState::Failed,
            JobStatus::Cancelled => pb::JobState::Cancelled,
            JobStatus::Paused => pb::JobState::Paused,
        }
    }
}

impl TryFrom<pb::JobState> for JobStatus {
    type Error = Error;

    fn try_from(s: pb::JobState) -> Result<Self, Error> {
        Ok(match s {
            pb::JobState::Queued => JobStatus::Queued,
            pb::JobState::Leased => JobStatus::Leased,
            pb::JobState::Done => JobStatus::Done,
            pb::JobState::Failed => JobStatus::Failed,
            pb::JobState::Cancelled => JobStatus::Cancelled,
            pb::JobState::Paused => JobStatus::Paused,
            pb::JobState::Unspecified => return Err(Error::Missing("state")),
        })
    }
}

/// A trial on the wire: its hyperparameters, and its dataset when there is one.
pub fn trial_to_wire(hp: &Hyperparameters, dataset: Option<pb::DatasetRef>) -> pb::TrialSpec {
    pb::TrialSpec {
        model: hp.model.name.clone(),
        dataset,
        batch_size: hp.batch_size,
        max_epochs: hp.max_epochs,
        learning_rate: hp.learning_rate,
        seed: hp.seed,
        optimizer: hp.optimizer.as_str().to_string(),
        weight_decay: hp.weight_decay,
    }
}

/// A trial from the wire, validated as a sweep file's cells are. An empty optimizer is MASE's Adam
/// (older coordinators left it out).
impl TryFrom<&pb::TrialSpec> for Hyperparameters {
    type Error = Error;

    fn try_from(t: &pb::TrialSpec) -> Result<Self, Error> {
        let hp = Hyperparameters {
            model: t.model.parse()?,
            optimizer: if t.optimizer.is_empty() {
                Default::default()
            } else {
                t.optimizer.parse()?
            },
            batch_size: t.batch_size,
            max_epochs: t.max_epochs,
            learning_rate: t.learning_rate,
            seed: t.seed,
            weight_decay: t.weight_decay,
        };
        hp.validate()?;
        Ok(hp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::ValidationKind;

    #[test]
    fn values_survive_the_round_trip() {
        let e = EpochMetrics {
            epoch: 3,
            lr: 1e-3,
            train_loss: 1.0,
            train_acc: 0.5,
            val_loss: 1.1,
            val_acc: 0.4,
            test_loss: 1.2,
            test_acc: 0.3,
            seconds: 0.25,
            samples_per_second: 1e6,
        };
        assert_eq!(EpochMetrics::from(&pb::EpochMetrics::from(&e)), e);
        let r = TrialResult {
            params: 117,
            test_acc: 0.7,
            best_epoch: 2,
            best_test_acc: 0.71,
        };
        assert_eq!(TrialResult::from(&pb::TrialResult::from(&r)), r);
        let d = DatasetRef {
            spec: "synthetic".into(),
            sha256: "ab".into(),
            bytes: 9,
            synthetic: true,
            validation: ValidationKind::HeldOut,
        };
        assert_eq!(DatasetRef::try_from(&pb::DatasetRef::from(&d)).unwrap(), d);
        let hp = Hyperparameters {
            model: "mlp:8,8".parse().unwrap(),
            seed: 7,
            ..Default::default()
        };
        assert_eq!(
            Hyperparameters::try_from(&trial_to_wire(&hp, None)).unwrap(),
            hp
        );
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::try_from(pb::JobState::from(s)).unwrap(), s);
        }
    }

    #[test]
    fn a_bad_trial_from_the_wire_is_refused_by_field() {
        let good = trial_to_wire(&Hyperparameters::default(), None);
        for (bad, field) in [
            (
                pb::TrialSpec {
                    batch_size: 0,
                    ..good.clone()
                },
                "batch_size",
            ),
            (
                pb::TrialSpec {
                    model: "resnet".into(),
                    ..good.clone()
                },
                "model",
            ),
            (
                pb::TrialSpec {
                    optimizer: "sgd".into(),
                    ..good.clone()
                },
                "optimizer",
            ),
            (
                pb::TrialSpec {
                    learning_rate: f64::INFINITY,
                    ..good.clone()
                },
                "learning_rate",
            ),
        ] {
            let err = Hyperparameters::try_from(&bad).unwrap_err();
            assert_eq!(err.field(), Some(field), "{err}");
        }
        let bad = pb::DatasetRef {
            sha256: "ab".into(),
            validation: "sometimes".into(),
            ..Default::default()
        };
        assert!(
            DatasetRef::try_from(&bad)
                .unwrap_err()
                .to_string()
                .contains("sometimes")
        );
    }
}
