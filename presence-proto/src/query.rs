//! Database work as data: the core asks ([`Query`], in an `Action::Query`) and is told the result
//! later ([`crate::Server::query_result`]). No SQL here: the runtimes' database adapters map each
//! query to the operator's configured SQL (Flexisip's `soci-users-with-phones-request`,
//! `rls-database-request`) or to the password file.

/// Identifies one query, allocated by the core in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);

/// What to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Accounts whose login or phone number is one of `users` (user parts of presentity URIs,
    /// unescaped, e.g. `alice` or `+33612345678`). At most `Config::max_query_batch` users per
    /// query: a list of N users costs N / batch queries.
    Accounts { users: Vec<String> },
    /// The members of a server-known resource list (`rls-database-request`): `from` is the
    /// subscriber's URI (`:from`), `to` the list URI (`:to`).
    ListMembers { from: String, to: String },
}

/// One account row: the login, and when the query returns them, its domain and phone number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub login: String,
    pub domain: Option<String>,
    pub phone: Option<String>,
}

/// What a query found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryResult {
    /// Rows matching a [`Query::Accounts`] (in any order; users not found have no row).
    Accounts(Vec<AccountRow>),
    /// One name-addr per row of a [`Query::ListMembers`] (`"Name" <sip:…>` or a bare URI), in
    /// the order the query returned them.
    ListMembers(Vec<String>),
}

/// Why a query failed (database down, timeout in the adapter, bad SQL...): logged, and the
/// request that waited on it gets a degraded but consistent answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError(pub String);
