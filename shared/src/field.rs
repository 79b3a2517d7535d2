//! A request field that failed validation: what value types and parsers report, and what the error
//! catalogue lists in a `VALIDATION_ERROR`'s details.

use serde::Serialize;

/// Any error, boxed (the source of a fault).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One field of a request that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field's path in the body, e.g. `items[2].quantity`; `body` for the whole body.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}
