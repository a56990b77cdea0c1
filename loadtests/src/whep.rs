//! WHEP (draft-ietf-wish-whep) client: the viewer's offer goes to `POST /whep/{session}`;
//! the exchange is the same as WHIP's ([`crate::whip::post_offer`]).

use reqwest::Client;

use crate::whip::{Resource, SignalError, post_offer};

/// `POST {base}/whep/{session}`.
pub async fn subscribe(
    client: &Client,
    base: &str,
    session: &str,
    token: &str,
    offer: String,
) -> Result<Resource, SignalError> {
    let endpoint = format!("{}/whep/{session}", base.trim_end_matches('/'));
    post_offer(client, &endpoint, token, offer).await
}
