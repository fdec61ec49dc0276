//! `LiveCallProducer`: polls Broadcastify live calls into a bounded queue.
