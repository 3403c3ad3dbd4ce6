//! Online applications. For now, the catalogue of services read from `forms/`.

pub mod catalogue;
