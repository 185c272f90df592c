//! A raw HTTP/1.1 upload over any stream (plain or TLS): the request head and body are written
//! by one task while another reads the answer to the end, as curl does, so a test sees whether
//! the server answered an upload it refused and then closed the connection cleanly.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What an upload got.
#[derive(Debug)]
pub struct Upload {
    /// Whether the head and the whole body could be written.
    pub sent: Result<(), String>,
    /// Everything the server sent back.
    pub response: String,
    /// How reading ended: `Ok` for an orderly end (TLS `close_notify`, then end of stream),
    /// `Err` for a reset or a truncated stream.
    pub end: Result<(), String>,
}

impl Upload {
    /// The status code of the answer's status line, if there is one.
    pub fn status(&self) -> Option<u16> {
        self.response
            .strip_prefix("HTTP/1.1 ")?
            .get(..3)?
            .parse()
            .ok()
    }
}

/// Sends `head` (the request line and headers, ending with an empty line) and then
/// `body_len` bytes of body, reading the answer meanwhile.
pub async fn upload<S>(stream: S, head: &str, body_len: usize) -> Upload
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let head = head.to_string();
    let sending = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        let mut left = body_len;
        while left > 0 {
            let n = left.min(chunk.len());
            writer.write_all(&chunk[..n]).await?;
            left -= n;
        }
        writer.flush().await?;
        // Keep our half open: the server decides when the connection ends.
        Ok::<_, std::io::Error>(writer)
    });
    let mut response = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let reading = async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => response.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let end = tokio::time::timeout(std::time::Duration::from_secs(20), reading)
        .await
        .unwrap_or_else(|_| Err("the server kept the connection open for 20 s".into()));
    let sent = match sending.await {
        Ok(Ok(_writer)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    Upload {
        sent,
        response: String::from_utf8_lossy(&response).into_owned(),
        end,
    }
}
