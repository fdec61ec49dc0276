//! Transcription of call audio through any OpenAI-compatible Whisper service.
