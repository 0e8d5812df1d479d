//! A prepared dataset as both sides name it: by the sha256 of its content, which is part of every
//! job's identity. (What a dataset *is* — sources, preparation, the file format — is `jetsweep-data`.)

pub use jetsweep_data::ValidationKind;

/// A prepared dataset, named by its content hash.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetRef {
    /// How the sweep file named it (`synthetic`, `openml`, a path).
    pub spec: String,
    /// sha256 of the prepared content; workers verify what they fetch against it.
    pub sha256: String,
    /// Size of the prepared file in bytes.
    pub bytes: u64,
    /// True when the jets are generated, not measured.
    pub synthetic: bool,
    /// What validation numbers were computed on.
    pub validation: ValidationKind,
}

/// The wire and store name of a validation kind, parsed back. Errors name the value.
pub fn parse_validation(s: &str) -> Result<ValidationKind, crate::Error> {
    [ValidationKind::TrainAsVal, ValidationKind::HeldOut]
        .into_iter()
        .find(|v| v.as_str() == s)
        .ok_or_else(|| crate::Error::Invalid {
            field: "validation",
            value: format!("{s:?}"),
            hint: "use \"train-as-val\" or \"held-out\"".into(),
        })
}
