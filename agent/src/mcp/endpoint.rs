//! What the connection glue tells the tracker about where a payload was seen.

use serde::Serialize;

/// The observed process's role on the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Client,
    Server,
    Unknown,
}

/// Direction of one payload: an HTTP request body flows client→server, a response body
/// (JSON or SSE events) server→client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    ClientToServer,
    ServerToClient,
}

impl Flow {
    /// The direction answers to this flow's requests travel.
    pub fn opposite(self) -> Flow {
        match self {
            Flow::ClientToServer => Flow::ServerToClient,
            Flow::ServerToClient => Flow::ClientToServer,
        }
    }
}

/// How the payload was framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// A whole `application/json` body.
    Json,
    /// One `text/event-stream` event's `data`.
    Sse,
}

/// One TCP connection of one observed process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub pid: u32,
    pub comm: String,
    pub side: Side,
    /// `"ip:port"` of the observed process's end.
    pub local: String,
    /// `"ip:port"` of the peer.
    pub remote: String,
    /// Unique per TCP connection of that process.
    pub conn_id: String,
}

impl Endpoint {
    /// `"ip:port"` of the server end: the peer when we observe a client, our own end when we
    /// observe a server (the peer, when the role is unknown).
    pub fn server_addr(&self) -> &str {
        match self.side {
            Side::Server => &self.local,
            Side::Client | Side::Unknown => &self.remote,
        }
    }

    /// `"ip:port"` of the client end (the other one than [`Endpoint::server_addr`]).
    pub fn client_addr(&self) -> &str {
        match self.side {
            Side::Server => &self.remote,
            Side::Client | Side::Unknown => &self.local,
        }
    }
}

/// The HTTP exchange a payload belongs to.
#[derive(Debug, Clone, Copy)]
pub struct HttpMeta<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// `None` until the response head has been seen.
    pub status: Option<u16>,
    pub request_headers: &'a [(String, String)],
    pub response_headers: Option<&'a [(String, String)]>,
    pub transport: Transport,
}

impl<'a> HttpMeta<'a> {
    /// A request header's value (name matched case-insensitively).
    pub fn request_header(&self, name: &str) -> Option<&'a str> {
        header_value(self.request_headers, name)
    }

    /// A response header's value, when the response head is known.
    pub fn response_header(&self, name: &str) -> Option<&'a str> {
        self.response_headers.and_then(|h| header_value(h, name))
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &'a str {
        self.path.split(['?', '#']).next().unwrap_or(self.path)
    }
}

/// First value of header `name` (case-insensitive), trimmed; `None` when absent or empty.
pub fn header_value<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_match_case_insensitively_and_values_are_trimmed() {
        let h = vec![("MCP-Session-Id".to_string(), " abc ".to_string())];
        assert_eq!(header_value(&h, "mcp-session-id"), Some("abc"));
        assert_eq!(header_value(&h, "Mcp-Session-Id"), Some("abc"));
        assert_eq!(header_value(&h, "mcp-protocol-version"), None);
        let empty = vec![("mcp-session-id".to_string(), "  ".to_string())];
        assert_eq!(header_value(&empty, "mcp-session-id"), None);
    }

    #[test]
    fn path_only_drops_the_query() {
        let meta = HttpMeta {
            method: "POST",
            path: "/messages?session_id=abc",
            status: None,
            request_headers: &[],
            response_headers: None,
            transport: Transport::Json,
        };
        assert_eq!(meta.path_only(), "/messages");
    }
}
