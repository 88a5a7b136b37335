//! What decides and limits a request, and how operators change it: [`table`] (the decision
//! table with its endpoint plans), [`watcher`] (reloads from the file), [`published`] (the
//! cells cores read the table and keys from), [`keys`] (client and admin keys), [`limits`]
//! (tenant rates and budgets), [`health`] (endpoint health from traffic), [`probe`] (active health checks), [`admin`] (the
//! admin API), [`changes`] (policy, endpoint and tenant changes), [`state`] (state files and
//! the directory lock), [`breaker`] (circuit breakers and rate-limit cooldowns), [`balance`] (load per endpoint: balanced sets,
//! retry budgets), [`cloud`] (what Bedrock and Vertex endpoints need beyond a URL),
//! [`fleet`] and [`redis`] (limits held across hosts), [`shared`] (admin state shared through
//! object storage, `--state`), [`remote_table`] (`--table s3://…`).

pub mod admin;
pub mod balance;
pub mod breaker;
pub mod changes;
pub mod cloud;
pub mod fleet;
pub mod health;
pub mod keys;
pub mod limits;
pub mod probe;
pub mod published;
pub mod redis;
pub mod remote_table;
pub mod shared;
pub mod state;
pub mod table;
pub mod watcher;
