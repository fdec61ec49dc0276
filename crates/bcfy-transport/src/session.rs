//! [`SessionSlot`]: where the current `bcfyuser1` session token lives.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use bcfy_proto::SessionToken;

/// The shared place that holds the current session token, read by the transport on every
/// request with [`CookiePolicy::Session`](crate::CookiePolicy::Session) and written by the
/// auth layer after a login, a logout or an invalidation.
///
/// Cloning is cheap and every clone sees the same slot. Each [`set`](Self::set) bumps a
/// generation counter so a caller can tell whether the token it saw is still current
/// ([`snapshot`](Self::snapshot), [`set_if_generation`](Self::set_if_generation)).
/// `Debug` never shows the token.
///
/// ```
/// use bcfy_proto::SessionToken;
/// use bcfy_transport::SessionSlot;
///
/// let slot = SessionSlot::new();
/// assert!(slot.get().is_none());
/// let g = slot.set(Some(SessionToken::new("abc")));
/// assert_eq!(slot.generation(), g);
/// assert_eq!(slot.get().unwrap().expose_secret(), "abc");
/// assert!(!format!("{slot:?}").contains("abc"));
/// ```
#[derive(Clone, Default)]
pub struct SessionSlot {
    inner: Arc<RwLock<SlotState>>,
}

#[derive(Default)]
struct SlotState {
    token: Option<SessionToken>,
    generation: u64,
}

impl SessionSlot {
    /// An empty slot (no session, generation 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// A slot that already holds `token` (generation 1).
    pub fn with_token(token: SessionToken) -> Self {
        let slot = Self::new();
        slot.set(Some(token));
        slot
    }

    /// The current token, if any.
    pub fn get(&self) -> Option<SessionToken> {
        self.read(|s| s.token.clone())
    }

    /// The current token and its generation, read together.
    pub fn snapshot(&self) -> (Option<SessionToken>, u64) {
        self.read(|s| (s.token.clone(), s.generation))
    }

    /// The number of [`set`](Self::set) calls so far.
    pub fn generation(&self) -> u64 {
        self.read(|s| s.generation)
    }

    /// Whether a token is present.
    pub fn is_set(&self) -> bool {
        self.read(|s| s.token.is_some())
    }

    /// Replaces the token (or clears it with `None`) and returns the new generation.
    pub fn set(&self, token: Option<SessionToken>) -> u64 {
        let mut state = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        state.token = token;
        state.generation += 1;
        state.generation
    }

    /// Replaces the token only if the generation is still `expected` (nobody set it since the
    /// caller looked). Returns the new generation, or `Err(current)` when it had moved on.
    pub fn set_if_generation(
        &self,
        expected: u64,
        token: Option<SessionToken>,
    ) -> Result<u64, u64> {
        let mut state = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if state.generation != expected {
            return Err(state.generation);
        }
        state.token = token;
        state.generation += 1;
        Ok(state.generation)
    }

    fn read<T>(&self, f: impl FnOnce(&SlotState) -> T) -> T {
        f(&self.inner.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl fmt::Debug for SessionSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (present, generation) = self.read(|s| (s.token.is_some(), s.generation));
        f.debug_struct("SessionSlot")
            .field("token", &if present { "[redacted]" } else { "none" })
            .field("generation", &generation)
            .finish()
    }
}
