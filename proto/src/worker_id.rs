//! A worker's id as the coordinator issues it at registration: `NAME.SECRET`. NAME (the host and
//! a number, `gpu-node-3`) is what people see in lists, logs and errors; SECRET (128 random bits,
//! hex) is never shown, so the id cannot be guessed or read off a listing, and a lease answers only
//! to the worker that holds the whole id. Ids of older coordinators have no SECRET.

/// The shown part of a worker id.
pub fn worker_name(id: &str) -> &str {
    id.split_once('.').map_or(id, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_name_is_shown() {
        assert_eq!(worker_name("gpu-node-3.0f9a"), "gpu-node-3");
        assert_eq!(worker_name("vm-1"), "vm-1");
        assert_eq!(worker_name(""), "");
    }
}
