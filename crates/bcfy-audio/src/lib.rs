//! `AudioConsumer`: downloads each call's audio once, in bounded, ordered, streamed fashion.
