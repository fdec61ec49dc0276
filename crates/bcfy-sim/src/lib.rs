//! A Broadcastify Calls and OpenAI Whisper simulator: a real hyper server for tests,
//! benchmarks and demos.
