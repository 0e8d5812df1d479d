//! What a person reads of a sweep, made from the wire's messages: results and jobs as tables and
//! CSV (`results`), in words (`words`), and as the JSON document that `jetsweep results --format
//! json`, the report's `results.json` and the dashboard's API share (`json`).

pub mod decisions;
pub mod json;
pub mod results;
pub mod words;
