//! Why a capture failed: one type for the whole live path, so the recording writer's
//! thread and the capture loop report alike.

use smap_replay::ReplayError;

use crate::k8s_api::K8sApiError;
use crate::kernel::KernelError;

/// Why a capture failed.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Loading, attaching or reading the kernel programs failed.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// Writing the recording or reading the kubectl file failed.
    #[error(transparent)]
    Recording(#[from] ReplayError),
    /// Watching the Kubernetes API failed in a way retrying cannot fix (RBAC, credentials).
    #[error(transparent)]
    K8sApi(#[from] K8sApiError),
    /// The recording writer's thread could not start or died.
    #[error("the recording writer: {0}")]
    Writer(String),
}
