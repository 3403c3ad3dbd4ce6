//! Online applications: services defined as data (`catalogue`, `form`), the flow a citizen follows
//! to apply (`flow`), the submission and its storage (`store`), drafts sent at the same moment
//! committed together (`desk`), the status model (`status`), the
//! page of a sent application with its PDF receipt (`pratica`, `receipt`).

pub mod catalogue;
pub mod conversation;
pub mod desk;
pub mod flow;
pub mod form;
pub mod pratica;
pub mod receipt;
pub mod status;
pub mod store;

pub fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    flow::routes(cfg);
    pratica::routes(cfg);
}
