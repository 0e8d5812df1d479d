//! What a person reads of a sweep, made from the wire's messages: results and jobs as words and
//! tables (`words`), and as the JSON document `jetsweep results --format json`, the report's
//! `results.json` and the dashboard's API share (`json`).

pub mod json;
pub mod words;
