//! Every answer the gateway makes itself, in Cloudflare's envelope.
