//! `login` against a fake server played over `tokio::io::duplex`. Only MariaDB runs where rwsplit
//! is developed, so MySQL 8's caching_sha2_password exchanges are checked here. The fake server
//! builds and parses its packets by hand from the protocol documentation (Protocol::HandshakeV10,
//! HandshakeResponse41, AuthSwitchRequest, AuthMoreData, OK, ERR) and computes the scrambles with
//! `sha1`/`sha2` directly rather than through `mysql_common` or `auth.rs`, so a misreading shared
//! with the code under test cannot hide.

use std::future::Future;
use std::time::Duration;

use rsa::pkcs8::DecodePrivateKey;
use rsa::{Oaep, Pkcs1v15Encrypt, RsaPrivateKey};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

// Capability flags, as the protocol documentation numbers them.
const CLIENT_CONNECT_WITH_DB: u32 = 0x0000_0008;
const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
const CLIENT_SSL: u32 = 0x0000_0800;
const CLIENT_SECURE_CONNECTION: u32 = 0x0000_8000;
const CLIENT_PLUGIN_AUTH: u32 = 0x0008_0000;
const CLIENT_CONNECT_ATTRS: u32 = 0x0010_0000;
const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 0x0020_0000;

/// MySQL 8.0 announces 0xdfff_ffff; without a TLS certificate, CLIENT_SSL is clear.
const MYSQL8_CAPS: u32 = 0xdfff_ffff & !CLIENT_SSL;
/// MariaDB 10.11 without TLS. Bit 0 (CLIENT_LONG_PASSWORD) clear is how MariaDB marks itself.
const MARIADB_CAPS: u32 = 0x81bf_f7fe;
/// MySQL 5.5: plugin auth, but no connection attributes (added in 5.6).
const MYSQL55_CAPS: u32 = 0x000f_f7ff;

const NATIVE: &str = "mysql_native_password";
const SHA2: &str = "caching_sha2_password";
const USER: &str = "app";
const PASSWORD: &str = "s3cret-pässword";
const CONNECTION_ID: u32 = 0x0102_0304;
const SERVER_COLLATION: u8 = 255; // utf8mb4_0900_ai_ci
/// Servers send 20 printable bytes, never NUL.
const NONCE: &[u8; 20] = b"Az3#kL9!qW2@xC7$vB5%";
const NEW_NONCE: &[u8; 20] = b"p0O9i8U7y6T5r4E3w2Q1";

const OK: &[u8] = &[0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00];
const FAST_AUTH_SUCCESS: &[u8] = &[0x01, 0x03];
const PERFORM_FULL_AUTH: &[u8] = &[0x01, 0x04];
const REQUEST_PUBLIC_KEY: &[u8] = &[0x02];

/// A fixed 2048-bit key (made once with `openssl genrsa`), so no test generates one.
const TEST_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCI4r/C1/idiC1b
rFAF5WCwxUqjpGOexwYU1Gp15nOUBGG7AGFNNURio/PEhVVGlDnV3L57cpB1v+6q
yuJ9z75GefVGZWULSsnXalE36i7ymZR9ObC2ymOlsTgutbxx/cRfwCLJrzyhcrFz
YbeZcJWK2C+zwAazm0LjkB7pOxyrnz4R+TbkSa1rGInuxDjUnSDUwhcxBM2BdZgH
P55pIvo7GaXKuhPyADw5n34GKQCIxrPbGaInZB1S4LXMNurrijUsbg6jgk1ZJbKE
3ORJ4Nxd/SHu9HcILxt38+o7KEUHEAFfAp9AW8E96Wc6/HZYnZSP78XNaGGhHNkF
oZLkEhyVAgMBAAECggEAPzPOzZRxdq7/HmI/qpE/pS7a6RbIZnHHZYu0Qg6vE8s4
IqMoygDLu+2uanETsBxVXeDn1FDP0YZWmOZHUEbAuIKsFJ5RWrbj3gH5USNgHOR7
cpxV8vgcrU7XvX1s7ob4iitJBK1UBclSlI8sOf0JFwv9bnW9wmTwK+kJ1K9V7AlU
KDyA6vdXLbNV/kaQDYSxxG3rGS5/qfYmRPNUnk4yAC87ra4+GxHK6uSyeBEoTrhX
9CszUVYmTS9RlrsoPp5C/1aKkXOLxUsWB4Hm1XHDsMx9dZeteHoqneMHVkq+Mtdi
0rZH94AngzBc7+4VW60F64tKSeXw5vQOE99/dB+lqwKBgQDBLSt0k8//lGnhL8/L
bEFDyTL3q/c07dFTvPZdVfPqn3g1eAoi7Ss24YiJF9HXq1vb7PQvj95/AaoFRG4+
j83SoZaflbKHytH6N2xrHNgfBkemdcNK8w6DbR9FbpV2dXGbHmW+JjBQJyKrCxEI
hC8moDA96bctMlVa6zrYtsrYJwKBgQC1Zx5MY3dWroe+u6AQbgzpMEu0NMHJL1O1
DOx/GodgziYAhuvBroKCVTQru9C7q7ZyN8yPpvZFzNDBTnSvcJK8EAeGvhCzlW9N
MSLxDaipJuRuBE9G8TRQURHgXlqaGjuKiG4fbQCE4OuG+X23H0VYm59ziomEBK5M
ST+tOS0+4wKBgQCNbnK4YVgRuSlj00uBlfqalH4aUu8k81Eky95cK4fvqV2rV/2j
4JyZC7qZFLVv/2e7ttp40A6IUkGWpalJaKO6qM/Mex9AyD+/wEBCk9WvsTtYJjQb
daSUmJoijXokRowsk67N7svEg0Kgk/Oelpim4PUw/yI7lvRjIoHtFLeiVQKBgGvM
MHwSa5tuMaqNUqwQyclU8tfOtg24+xRO7scFW8eSGZEcnELHUjTjLxKCFKNBgjTT
pdMD07tc3/zPg5Wx3vC00dQnZENjnPWRKoN2q3CBdSNPmlC9C2pjEq1zRIHo7tL/
CfnQy4srIate3W8RvSLPr+x4OgniwjUBHj7xCEsjAoGBALg5Ng9gNy/OWa0P28VV
UFAPQ7UGGxZoL/V5wifekZ6CpiVpP8MnptAq5AahOsNdsQOme64sXGzxEJcFz8la
75PcidPHeW27gwgbvqXJ5nDz5rlJM/uDRaz2GawvtrFg+fCJbZxsGBTFBHrH9arg
TYemBeflanXpXoQsWKs/hwqB
-----END PRIVATE KEY-----
";

/// The public half, as MySQL sends it in the public key response (SubjectPublicKeyInfo PEM).
const TEST_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAiOK/wtf4nYgtW6xQBeVg
sMVKo6RjnscGFNRqdeZzlARhuwBhTTVEYqPzxIVVRpQ51dy+e3KQdb/uqsrifc++
Rnn1RmVlC0rJ12pRN+ou8pmUfTmwtspjpbE4LrW8cf3EX8Aiya88oXKxc2G3mXCV
itgvs8AGs5tC45Ae6Tscq58+Efk25EmtaxiJ7sQ41J0g1MIXMQTNgXWYBz+eaSL6
OxmlyroT8gA8OZ9+BikAiMaz2xmiJ2QdUuC1zDbq64o1LG4Oo4JNWSWyhNzkSeDc
Xf0h7vR3CC8bd/PqOyhFBxABXwKfQFvBPelnOvx2WJ2Uj+/FzWhhoRzZBaGS5BIc
lQIDAQAB
-----END PUBLIC KEY-----
";

// ---- the fake server ----

/// What the fake server talks over: a duplex, TCP, or TLS over TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

/// The server end of the stream: frames packets and checks the client's sequence ids.
struct FakeServer {
    io: Box<dyn Io>,
    seq: u8,
}

impl FakeServer {
    async fn send(&mut self, payload: &[u8]) {
        let len = u32::try_from(payload.len()).unwrap().to_le_bytes();
        self.send_raw(&[len[0], len[1], len[2], self.seq]).await;
        self.send_raw(payload).await;
        self.seq = self.seq.wrapping_add(1);
    }

    /// Bytes exactly as given, for frames a hostile server cuts off.
    async fn send_raw(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
    }

    async fn recv(&mut self) -> Vec<u8> {
        let mut h = [0u8; 4];
        self.io
            .read_exact(&mut h)
            .await
            .expect("the client closed instead of sending a packet");
        assert_eq!(h[3], self.seq, "sequence id of the client's packet");
        self.seq = self.seq.wrapping_add(1);
        let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
        let mut payload = vec![0; len];
        self.io.read_exact(&mut payload).await.unwrap();
        payload
    }

    /// Receives the HandshakeResponse41 and checks what every login must carry.
    async fn recv_login(&mut self, offered: u32, plugin: &str, auth_response: &[u8]) -> Login {
        let login = parse_login(&self.recv().await);
        let caps = login.capabilities;
        assert_ne!(
            caps & CLIENT_PROTOCOL_41,
            0,
            "no CLIENT_PROTOCOL_41 in {caps:#x}"
        );
        assert_ne!(
            caps & CLIENT_PLUGIN_AUTH,
            0,
            "no CLIENT_PLUGIN_AUTH in {caps:#x}"
        );
        assert_eq!(caps & !offered, 0, "capabilities the server did not offer");
        assert_eq!(login.user, USER.as_bytes());
        assert_eq!(login.plugin.as_deref(), Some(plugin.as_bytes()));
        assert_eq!(login.auth_response, auth_response, "auth response");
        login
    }
}

/// Runs `login` over TCP against `server`, then surfaces any assertion the server failed.
async fn login_against<Fut>(
    creds: &Credentials<'_>,
    server: impl FnOnce(FakeServer) -> Fut,
) -> Result<Session, ConnectError>
where
    Fut: Future<Output = ()> + Send + 'static,
{
    login_over(false, creds, server).await
}

/// Runs `login` against `server` over a transport the server counts as secure or not.
async fn login_over<Fut>(
    secure: bool,
    creds: &Credentials<'_>,
    server: impl FnOnce(FakeServer) -> Fut,
) -> Result<Session, ConnectError>
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let (mut client, server_end) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(server(FakeServer {
        io: Box::new(server_end),
        seq: 0,
    }));
    // Guards against a client that waits forever; not a timing assertion.
    let result = tokio::time::timeout(Duration::from_secs(10), login(&mut client, creds, secure))
        .await
        .expect("login hung");
    drop(client);
    if let Err(e) = server.await {
        std::panic::resume_unwind(e.into_panic());
    }
    result
}

fn creds(password: &str) -> Credentials<'_> {
    Credentials {
        user: USER,
        password,
        database: None,
        capabilities: BACKEND_BASE,
        collation: 45, // utf8mb4_general_ci
    }
}

// ---- packets, by hand ----

/// Protocol::HandshakeV10 as both servers send it: the 20-byte nonce split 8 + 12, the second part
/// NUL-terminated, and auth-plugin-data-len counting that NUL.
fn greeting(version: &str, caps: u32, plugin: &str) -> Vec<u8> {
    let mut p = vec![10];
    put_nul_str(&mut p, version.as_bytes());
    p.extend_from_slice(&CONNECTION_ID.to_le_bytes());
    p.extend_from_slice(&NONCE[..8]);
    p.push(0);
    p.extend_from_slice(&caps.to_le_bytes()[..2]);
    p.push(SERVER_COLLATION);
    p.extend_from_slice(&[0x02, 0x00]); // SERVER_STATUS_AUTOCOMMIT
    p.extend_from_slice(&caps.to_le_bytes()[2..]);
    p.push(21);
    p.extend_from_slice(&[0; 10]);
    put_nul_str(&mut p, &NONCE[8..]);
    put_nul_str(&mut p, plugin.as_bytes());
    p
}

fn mysql8_greeting(plugin: &str) -> Vec<u8> {
    greeting("8.0.36", MYSQL8_CAPS, plugin)
}

fn mariadb_greeting(plugin: &str) -> Vec<u8> {
    greeting("5.5.5-10.11.6-MariaDB", MARIADB_CAPS, plugin)
}

fn auth_switch(plugin: &str, nonce: &[u8; 20]) -> Vec<u8> {
    let mut p = vec![0xFE];
    put_nul_str(&mut p, plugin.as_bytes());
    put_nul_str(&mut p, nonce);
    p
}

fn public_key_response(pem: &[u8]) -> Vec<u8> {
    [&[0x01][..], pem].concat()
}

fn err_packet(code: u16, sql_state: Option<&str>, message: &str) -> Vec<u8> {
    let mut p = vec![0xFF];
    p.extend_from_slice(&code.to_le_bytes());
    if let Some(state) = sql_state {
        p.push(b'#');
        p.extend_from_slice(state.as_bytes());
    }
    p.extend_from_slice(message.as_bytes());
    p
}

fn put_nul_str(p: &mut Vec<u8>, s: &[u8]) {
    p.extend_from_slice(s);
    p.push(0);
}

/// Protocol::HandshakeResponse41, field by field as the documentation lays it out.
#[derive(Debug)]
struct Login {
    capabilities: u32,
    collation: u8,
    user: Vec<u8>,
    auth_response: Vec<u8>,
    database: Option<Vec<u8>>,
    plugin: Option<Vec<u8>>,
}

fn parse_login(payload: &[u8]) -> Login {
    let mut r = Reader(payload);
    let capabilities = r.u32();
    let _max_packet_size = r.u32();
    let collation = r.u8();
    assert_eq!(r.take(23), [0; 23], "filler");
    let user = r.nul_str().to_vec();
    let auth_response = if capabilities & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        r.lenenc_bytes()
    } else if capabilities & CLIENT_SECURE_CONNECTION != 0 {
        let n = r.u8();
        r.take(usize::from(n))
    } else {
        r.nul_str()
    }
    .to_vec();
    let database = (capabilities & CLIENT_CONNECT_WITH_DB != 0).then(|| r.nul_str().to_vec());
    let plugin = (capabilities & CLIENT_PLUGIN_AUTH != 0).then(|| r.nul_str().to_vec());
    if capabilities & CLIENT_CONNECT_ATTRS != 0 {
        let mut attrs = Reader(r.lenenc_bytes());
        while !attrs.0.is_empty() {
            attrs.lenenc_bytes(); // key
            attrs.lenenc_bytes(); // value
        }
    }
    assert!(r.0.is_empty(), "{} bytes after the last field", r.0.len());
    Login {
        capabilities,
        collation,
        user,
        auth_response,
        database,
        plugin,
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        assert!(self.0.len() >= n, "the login packet ends early");
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }

    fn lenenc_bytes(&mut self) -> &'a [u8] {
        let n = match self.u8() {
            n @ 0..=0xFA => usize::from(n),
            0xFC => usize::from(u16::from_le_bytes(self.take(2).try_into().unwrap())),
            b => panic!("unexpected length-encoded integer prefix {b:#x}"),
        };
        self.take(n)
    }

    fn nul_str(&mut self) -> &'a [u8] {
        let end = self.0.iter().position(|&b| b == 0).expect("a NUL");
        let s = self.take(end);
        self.take(1);
        s
    }
}

// ---- expected values, computed independently ----

/// SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password))); empty for an empty password.
fn native_scramble(password: &str, nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha1::digest(password);
    let stage2 = Sha1::digest(stage1);
    let stage3 = Sha1::new()
        .chain_update(nonce)
        .chain_update(stage2)
        .finalize();
    stage1.iter().zip(stage3).map(|(a, b)| a ^ b).collect()
}

/// XOR(SHA256(password), SHA256(SHA256(SHA256(password)), nonce)); empty for an empty password.
fn sha2_scramble(password: &str, nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha256::digest(password);
    let stage2 = Sha256::digest(stage1);
    let stage3 = Sha256::new()
        .chain_update(stage2)
        .chain_update(nonce)
        .finalize();
    stage1.iter().zip(stage3).map(|(a, b)| a ^ b).collect()
}

/// What the server recovers in full authentication: the NUL-terminated password XOR the nonce.
fn password_xor_nonce(password: &str, nonce: &[u8]) -> Vec<u8> {
    let plain = [password.as_bytes(), &[0]].concat();
    plain
        .iter()
        .zip(nonce.iter().cycle())
        .map(|(a, b)| a ^ b)
        .collect()
}

/// Decrypts as MySQL's server does (RSA_PKCS1_OAEP_PADDING, SHA-1).
fn decrypt_password(encrypted: &[u8]) -> Vec<u8> {
    let key = RsaPrivateKey::from_pkcs8_pem(TEST_PRIVATE_KEY).unwrap();
    assert_eq!(encrypted.len(), 256, "one block of the 2048-bit key");
    match key.decrypt(Oaep::new::<Sha1>(), encrypted) {
        Ok(plain) => plain,
        Err(e) if key.decrypt(Pkcs1v15Encrypt, encrypted).is_ok() => {
            panic!("encrypted with PKCS#1 v1.5, not OAEP as the server expects: {e}")
        }
        Err(e) => panic!("not RSA-OAEP (SHA-1) with the server's key: {e}"),
    }
}

// ---- logins that succeed ----

#[tokio::test]
async fn mysql8_fast_auth_logs_in_with_the_greetings_version_and_connection_id() {
    let creds = Credentials {
        database: Some("shop"),
        ..creds(PASSWORD)
    };
    let session = login_against(&creds, |mut server| async move {
        server.send(&mysql8_greeting(SHA2)).await;
        let expected = sha2_scramble(PASSWORD, NONCE);
        let login = server.recv_login(MYSQL8_CAPS, SHA2, &expected).await;
        assert_eq!(login.database.as_deref(), Some(&b"shop"[..]));
        server.send(FAST_AUTH_SUCCESS).await;
        server.send(OK).await;
    })
    .await
    .unwrap();
    assert_eq!(session.identity.version, "8.0.36");
    assert_eq!(session.identity.collation, SERVER_COLLATION);
    assert_eq!(session.connection_id, CONNECTION_ID);
    assert!(session.capabilities.contains(C::CLIENT_PROTOCOL_41));
}

#[tokio::test]
async fn mysql8_full_auth_sends_the_password_rsa_oaep_encrypted_with_the_servers_key() {
    login_against(&creds(PASSWORD), |mut server| async move {
        server.send(&mysql8_greeting(SHA2)).await;
        let expected = sha2_scramble(PASSWORD, NONCE);
        server.recv_login(MYSQL8_CAPS, SHA2, &expected).await;
        server.send(PERFORM_FULL_AUTH).await;
        assert_eq!(server.recv().await, REQUEST_PUBLIC_KEY);
        server
            .send(&public_key_response(TEST_PUBLIC_KEY.as_bytes()))
            .await;
        let encrypted = server.recv().await;
        assert_eq!(
            decrypt_password(&encrypted),
            password_xor_nonce(PASSWORD, NONCE)
        );
        server.send(OK).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn mysql8_full_auth_over_a_unix_socket_sends_the_password_in_clear() {
    // MySQL 8 reads the cleartext password on a secure transport (socket or TLS); a public key
    // request there would be taken as the password and refused.
    login_over(true, &creds(PASSWORD), |mut server| async move {
        server.send(&mysql8_greeting(SHA2)).await;
        let expected = sha2_scramble(PASSWORD, NONCE);
        server.recv_login(MYSQL8_CAPS, SHA2, &expected).await;
        server.send(PERFORM_FULL_AUTH).await;
        let mut clear = PASSWORD.as_bytes().to_vec();
        clear.push(0);
        assert_eq!(server.recv().await, clear);
        server.send(OK).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn fast_auth_over_a_unix_socket_sends_no_password() {
    login_over(true, &creds(PASSWORD), |mut server| async move {
        server.send(&mysql8_greeting(SHA2)).await;
        let expected = sha2_scramble(PASSWORD, NONCE);
        server.recv_login(MYSQL8_CAPS, SHA2, &expected).await;
        server.send(FAST_AUTH_SUCCESS).await;
        server.send(OK).await;
        // Nothing more from the client (no password): the next read meets its end.
        let mut rest = Vec::new();
        server.io.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "the client sent more: {rest:?}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_switch_to_caching_sha2_is_answered_with_the_scramble_of_the_new_nonce() {
    login_against(&creds(PASSWORD), |mut server| async move {
        server.send(&mariadb_greeting(NATIVE)).await;
        let expected = native_scramble(PASSWORD, NONCE);
        server.recv_login(MARIADB_CAPS, NATIVE, &expected).await;
        server.send(&auth_switch(SHA2, NEW_NONCE)).await;
        assert_eq!(server.recv().await, sha2_scramble(PASSWORD, NEW_NONCE));
        server.send(FAST_AUTH_SUCCESS).await;
        server.send(OK).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_switch_to_native_password_is_answered_with_the_scramble_of_the_new_nonce() {
    login_against(&creds(PASSWORD), |mut server| async move {
        server.send(&mysql8_greeting(SHA2)).await;
        let expected = sha2_scramble(PASSWORD, NONCE);
        server.recv_login(MYSQL8_CAPS, SHA2, &expected).await;
        server.send(&auth_switch(NATIVE, NEW_NONCE)).await;
        assert_eq!(server.recv().await, native_scramble(PASSWORD, NEW_NONCE));
        server.send(OK).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn full_auth_after_a_switch_xors_the_password_with_the_new_nonce() {
    login_against(&creds(PASSWORD), |mut server| async move {
        server.send(&mysql8_greeting(NATIVE)).await;
        let expected = native_scramble(PASSWORD, NONCE);
        server.recv_login(MYSQL8_CAPS, NATIVE, &expected).await;
        server.send(&auth_switch(SHA2, NEW_NONCE)).await;
        assert_eq!(server.recv().await, sha2_scramble(PASSWORD, NEW_NONCE));
        server.send(PERFORM_FULL_AUTH).await;
        assert_eq!(server.recv().await, REQUEST_PUBLIC_KEY);
        server
            .send(&public_key_response(TEST_PUBLIC_KEY.as_bytes()))
            .await;
        let encrypted = server.recv().await;
        assert_eq!(
            decrypt_password(&encrypted),
            password_xor_nonce(PASSWORD, NEW_NONCE)
        );
        server.send(OK).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_empty_password_sends_an_empty_caching_sha2_auth_response() {
    login_against(&creds(""), |mut server| async move {
        server.send(&mysql8_greeting(SHA2)).await;
        server.recv_login(MYSQL8_CAPS, SHA2, b"").await;
        server.send(OK).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_empty_password_sends_an_empty_native_auth_response() {
    login_against(&creds(""), |mut server| async move {
        server.send(&mariadb_greeting(NATIVE)).await;
        server.recv_login(MARIADB_CAPS, NATIVE, b"").await;
        server.send(OK).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_login_asks_for_the_collation_in_the_credentials() {
    let creds = Credentials {
        collation: 224, // utf8mb4_unicode_ci
        ..creds(PASSWORD)
    };
    login_against(&creds, |mut server| async move {
        server.send(&mariadb_greeting(NATIVE)).await;
        let expected = native_scramble(PASSWORD, NONCE);
        let login = server.recv_login(MARIADB_CAPS, NATIVE, &expected).await;
        assert_eq!(login.collation, 224);
        server.send(OK).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_login_asks_only_for_capabilities_the_server_offered() {
    login_against(&creds(PASSWORD), |mut server| async move {
        server.send(&greeting("5.5.62", MYSQL55_CAPS, NATIVE)).await;
        let expected = native_scramble(PASSWORD, NONCE);
        server.recv_login(MYSQL55_CAPS, NATIVE, &expected).await;
        server.send(OK).await;
    })
    .await
    .unwrap();
}

// ---- refusals ----

#[tokio::test]
async fn access_denied_after_the_login_is_refused_with_the_servers_code_and_message() {
    const DENIED: &str = "Access denied for user 'app'@'10.0.0.5' (using password: YES)";
    let err = login_against(&creds("wrong"), |mut server| async move {
        server.send(&mysql8_greeting(SHA2)).await;
        server.recv().await;
        server.send(&err_packet(1045, Some("28000"), DENIED)).await;
    })
    .await
    .unwrap_err();
    match err {
        ConnectError::Refused { code, message } => assert_eq!((code, &*message), (1045, DENIED)),
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[tokio::test]
async fn an_error_instead_of_a_greeting_is_refused_with_the_servers_code_and_message() {
    // Sent before the server knows the client speaks 4.1, so without a SQLSTATE.
    const BLOCKED: &str = "Host '10.0.0.5' is not allowed to connect to this MySQL server";
    let err = login_against(&creds(PASSWORD), |mut server| async move {
        server.send(&err_packet(1130, None, BLOCKED)).await;
    })
    .await
    .unwrap_err();
    assert_eq!(err.server_error(), Some((1130, BLOCKED)));
}

// ---- hostile or broken servers: an error, never a panic ----

#[tokio::test]
async fn a_greeting_cut_short_anywhere_is_an_error() {
    let full = mysql8_greeting(SHA2);
    for cut in 0..full.len() {
        let partial = full[..cut].to_vec();
        let result = login_against(&creds(PASSWORD), |mut server| async move {
            server.send(&partial).await;
        })
        .await;
        assert!(
            result.is_err(),
            "a greeting cut after {cut} bytes logged in"
        );
    }
}

#[tokio::test]
async fn a_greeting_frame_cut_off_by_a_closed_stream_is_a_closed_connection() {
    let err = login_against(&creds(PASSWORD), |mut server| async move {
        let full = mysql8_greeting(SHA2);
        let len = u32::try_from(full.len()).unwrap().to_le_bytes();
        server.send_raw(&[len[0], len[1], len[2], 0]).await;
        server.send_raw(&full[..full.len() / 2]).await;
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, ConnectError::Frame(FrameError::Closed)),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_server_closing_after_the_login_packet_is_a_closed_connection() {
    let err = login_against(&creds(PASSWORD), |mut server| async move {
        server.send(&mysql8_greeting(SHA2)).await;
        server.recv().await;
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, ConnectError::Frame(FrameError::Closed)),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_garbage_public_key_is_malformed() {
    let garbage: [&[u8]; 5] = [
        b"",
        b"\x00\xff\x13garbage",
        b"-----BEGIN PUBLIC KEY-----\nnot base64 at all!\n-----END PUBLIC KEY-----\n",
        b"-----BEGIN PUBLIC KEY-----\nAAAAAAAA\n-----END PUBLIC KEY-----\n",
        &TEST_PUBLIC_KEY.as_bytes()[..TEST_PUBLIC_KEY.len() / 2],
    ];
    for key in garbage {
        let err = login_against(&creds(PASSWORD), |mut server| async move {
            server.send(&mysql8_greeting(SHA2)).await;
            server.recv().await;
            server.send(PERFORM_FULL_AUTH).await;
            server.recv().await;
            server.send(&public_key_response(key)).await;
        })
        .await
        .unwrap_err();
        assert!(
            matches!(err, ConnectError::Malformed("RSA public key")),
            "key {:?}: {err:?}",
            String::from_utf8_lossy(key)
        );
    }
}

#[tokio::test]
async fn a_switch_to_an_unknown_plugin_is_unsupported() {
    let err = login_against(&creds(PASSWORD), |mut server| async move {
        server.send(&mariadb_greeting(NATIVE)).await;
        server.recv().await;
        server.send(&auth_switch("dialog", NEW_NONCE)).await;
    })
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ConnectError::UnsupportedPlugin(name) if name == "dialog"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_greeting_without_protocol_41_is_an_old_server() {
    let err = login_against(&creds(PASSWORD), |mut server| async move {
        let caps = MYSQL8_CAPS & !CLIENT_PROTOCOL_41;
        server.send(&greeting("8.0.36", caps, NATIVE)).await;
    })
    .await
    .unwrap_err();
    assert!(matches!(err, ConnectError::OldServer), "{err:?}");
}

#[tokio::test]
async fn a_protocol_9_greeting_is_an_old_server() {
    // Protocol::HandshakeV9: version, server version, connection id, NUL-terminated scramble.
    let mut v9 = vec![9];
    put_nul_str(&mut v9, b"3.23.58");
    v9.extend_from_slice(&CONNECTION_ID.to_le_bytes());
    put_nul_str(&mut v9, &NONCE[..8]);
    let err = login_against(&creds(PASSWORD), |mut server| async move {
        server.send(&v9).await;
    })
    .await
    .unwrap_err();
    assert!(matches!(err, ConnectError::OldServer), "{err:?}");
}

// ---- TLS (`pool::conn::BackendConn::connect` upgrades between the greeting and the login) ----

/// A self-signed certificate for the fake server (made once with `openssl req -x509`, EC P-256,
/// valid to 2126), and its key.
const FAKE_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBnTCCAUSgAwIBAgIUAayk83rUxRYMB+QeAWysAtGCjKYwCgYIKoZIzj0EAwIw
FTETMBEGA1UEAwwKZmFrZS1teXNxbDAgFw0yNjExMjUwNDU5NThaGA8yMTI2MTEw
MTA0NTk1OFowFTETMBEGA1UEAwwKZmFrZS1teXNxbDBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABPaSl3Ei0WrXE4PxOL/GJotKvYcIZTvNjnZA1j1cAR9/t4JCZ5PO
33Fv63yXMWleYzTsA+O6WgNjPqLt+73NVgWjcDBuMB0GA1UdDgQWBBQ2ZQuytN1K
GgPQmNxqDkp2WIlHzDAfBgNVHSMEGDAWgBQ2ZQuytN1KGgPQmNxqDkp2WIlHzDAP
BgNVHRMBAf8EBTADAQH/MBsGA1UdEQQUMBKCCmZha2UtbXlzcWyHBH8AAAEwCgYI
KoZIzj0EAwIDRwAwRAIgOWKfDUKZCL3eVZZS32q3Q0ZzeLTawqLOREcgM+TVy2AC
IDLUuCiCEjLAzLuctaXk6+ey5fnlyaySJr0/3RNnuz30
-----END CERTIFICATE-----
";
const FAKE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg09KqxiZkphJK90nA
4FMn4JljrgOgOIH0X1VmwBkRCOehRANCAAT2kpdxItFq1xOD8Ti/xiaLSr2HCGU7
zY52QNY9XAEff7eCQmeTzt9xb+t8lzFpXmM07APjuloDYz6i7fu9zVYF
-----END PRIVATE KEY-----
";

impl FakeServer {
    /// Reads the client's SSL request (the handshake response's first 32 bytes, CLIENT_SSL set)
    /// and runs the TLS handshake; the login goes on over TLS. Also returns the request's
    /// capability flags.
    async fn accept_tls(mut self) -> (FakeServer, u32) {
        use rustls_pki_types::pem::PemObject;
        let request = self.recv().await;
        assert_eq!(request.len(), 32, "SSL request: {request:?}");
        let caps = u32::from_le_bytes([request[0], request[1], request[2], request[3]]);
        assert_ne!(caps & CLIENT_SSL, 0, "no CLIENT_SSL in the SSL request");
        let cert = rustls_pki_types::CertificateDer::from_pem_slice(FAKE_CERT.as_bytes()).unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(FAKE_KEY.as_bytes()).unwrap();
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(
            std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider()),
        )
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let tls = acceptor.accept(self.io).await.expect("TLS handshake");
        let server = FakeServer {
            io: Box::new(tls),
            seq: self.seq,
        };
        (server, caps)
    }
}

/// Runs `BackendConn::connect` over TCP against `server` with `tls`, then surfaces any
/// assertion the server failed.
async fn connect_with<Fut>(
    tls: &crate::tls::BackendTls,
    server: impl FnOnce(FakeServer) -> Fut + Send + 'static,
) -> Result<crate::pool::BackendConn, crate::pool::BackendError>
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let (result, server) = connect_serving(tls, server).await;
    if let Err(e) = server.await {
        std::panic::resume_unwind(e.into_panic());
    }
    result
}

/// `BackendConn::connect` against `server`, which goes on serving the connection after it.
async fn connect_serving<Fut>(
    tls: &crate::tls::BackendTls,
    server: impl FnOnce(FakeServer) -> Fut + Send + 'static,
) -> (
    Result<crate::pool::BackendConn, crate::pool::BackendError>,
    tokio::task::JoinHandle<()>,
)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (io, _) = listener.accept().await.unwrap();
        server(FakeServer {
            io: Box::new(io),
            seq: 0,
        })
        .await
    });
    // As the pools ask: results may end with an OK instead of an EOF.
    let creds = Credentials {
        capabilities: BACKEND_BASE | C::CLIENT_DEPRECATE_EOF,
        database: Some("app"),
        ..creds(PASSWORD)
    };
    let conn =
        crate::pool::BackendConn::connect(&address, &creds, Duration::from_secs(10), tls, &address);
    // Guards against a client that waits forever; not a timing assertion.
    let result = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("connect hung");
    (result, server)
}

fn tls_mode(mode: crate::tls::BackendTlsMode) -> crate::tls::BackendTls {
    crate::tls::BackendTls::load(mode, None, None).unwrap()
}

#[tokio::test]
async fn mysql8_full_auth_over_tls_sends_the_password_in_clear() {
    use crate::tls::BackendTlsMode::Required;
    const MYSQL8_TLS_CAPS: u32 = MYSQL8_CAPS | CLIENT_SSL;
    let conn = connect_with(&tls_mode(Required), |mut server| async move {
        server
            .send(&greeting("8.0.36", MYSQL8_TLS_CAPS, SHA2))
            .await;
        let (mut server, requested) = server.accept_tls().await;
        let expected = sha2_scramble(PASSWORD, NONCE);
        let login = server.recv_login(MYSQL8_TLS_CAPS, SHA2, &expected).await;
        assert_eq!(
            login.capabilities, requested,
            "the SSL request's flags and the login's"
        );
        assert_ne!(login.capabilities & CLIENT_CONNECT_WITH_DB, 0);
        server.send(PERFORM_FULL_AUTH).await;
        let mut clear = PASSWORD.as_bytes().to_vec();
        clear.push(0);
        assert_eq!(server.recv().await, clear);
        server.send(OK).await;
    })
    .await
    .expect("logged in over TLS");
    assert_eq!(conn.connection_id, CONNECTION_ID);
}

#[tokio::test]
async fn a_server_without_tls_is_refused_when_tls_is_required_and_used_plain_when_preferred() {
    use crate::tls::BackendTlsMode::{Preferred, Required, VerifyIdentity};
    for mode in [Required, VerifyIdentity] {
        let tls = match mode {
            VerifyIdentity => {
                let dir = std::env::temp_dir().join(format!("rwsplit-ca-{}", std::process::id()));
                std::fs::create_dir_all(&dir).unwrap();
                let ca = dir.join("ca.pem");
                std::fs::write(&ca, FAKE_CERT).unwrap();
                let tls = crate::tls::BackendTls::load(mode, Some(&ca), None).unwrap();
                std::fs::remove_dir_all(&dir).unwrap();
                tls
            }
            _ => tls_mode(mode),
        };
        let r = connect_with(&tls, |mut server| async move {
            server.send(&mysql8_greeting(SHA2)).await;
            // The client hangs up without a login.
            let mut rest = Vec::new();
            server.io.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty(), "the client sent {rest:?}");
        })
        .await;
        match r {
            Err(crate::pool::BackendError::TlsUnavailable { mode: m, .. }) => {
                assert_eq!(m, mode.name())
            }
            Err(e) => panic!("{mode:?}: {e}"),
            Ok(_) => panic!("{mode:?}: logged in without TLS"),
        }
    }
    connect_with(&tls_mode(Preferred), |mut server| async move {
        server.send(&mysql8_greeting(SHA2)).await;
        let expected = sha2_scramble(PASSWORD, NONCE);
        let login = server.recv_login(MYSQL8_CAPS, SHA2, &expected).await;
        assert_eq!(login.capabilities & CLIENT_SSL, 0);
        server.send(FAST_AUTH_SUCCESS).await;
        server.send(OK).await;
    })
    .await
    .expect("logged in without TLS");
}

// ---- `BackendConn::query_rows`, which the monitor reads replication state with ----

/// Protocol::ColumnDefinition41 for a VARCHAR column `name`.
fn column_definition(name: &str) -> Vec<u8> {
    let mut p = Vec::new();
    for s in ["def", "", "", "", name, name] {
        p.push(u8::try_from(s.len()).unwrap());
        p.extend_from_slice(s.as_bytes());
    }
    p.push(0x0c);
    p.extend_from_slice(&45u16.to_le_bytes()); // character set
    p.extend_from_slice(&1024u32.to_le_bytes()); // column length
    p.push(0xfd); // MYSQL_TYPE_VAR_STRING
    p.extend_from_slice(&[0, 0, 0, 0, 0]); // flags, decimals, filler
    p
}

/// A text row: each value length-encoded, NULL as 0xFB.
fn text_row(values: &[Option<&str>]) -> Vec<u8> {
    let mut p = Vec::new();
    for v in values {
        match v {
            Some(v) => {
                p.push(u8::try_from(v.len()).unwrap());
                p.extend_from_slice(v.as_bytes());
            }
            None => p.push(0xfb),
        }
    }
    p
}

#[tokio::test]
async fn query_rows_reads_names_values_and_nulls_with_either_end_of_rows() {
    const CLIENT_DEPRECATE_EOF: u32 = 0x0100_0000;
    const EOF: &[u8] = &[0xfe, 0x00, 0x00, 0x02, 0x00];
    const END_OK: &[u8] = &[0xfe, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00];
    let columns = [
        "Replica_IO_Running",
        "Seconds_Behind_Source",
        "Last_IO_Error",
    ];
    let rows: [&[Option<&str>]; 2] = [
        &[Some("Yes"), None, Some("")],
        &[Some("Connecting"), Some("12"), Some("error reconnecting")],
    ];
    for deprecate_eof in [false, true] {
        let offered = if deprecate_eof {
            MYSQL8_CAPS
        } else {
            MYSQL8_CAPS & !CLIENT_DEPRECATE_EOF
        };
        let plain = crate::tls::BackendTls::default();
        let (conn, server) = connect_serving(&plain, move |mut server| async move {
            server.send(&greeting("8.0.36", offered, NATIVE)).await;
            server
                .recv_login(offered, NATIVE, &native_scramble(PASSWORD, NONCE))
                .await;
            server.send(OK).await;
            for answer_error in [false, true] {
                server.seq = 0;
                assert_eq!(server.recv().await, b"\x03SHOW REPLICA STATUS");
                if answer_error {
                    server
                        .send(&err_packet(1064, Some("42000"), "syntax"))
                        .await;
                    continue;
                }
                server.send(&[3]).await;
                for c in columns {
                    server.send(&column_definition(c)).await;
                }
                if !deprecate_eof {
                    server.send(EOF).await;
                }
                for r in rows {
                    server.send(&text_row(r)).await;
                }
                server.send(if deprecate_eof { END_OK } else { EOF }).await;
            }
        })
        .await;
        let mut conn = conn.expect("log in");
        assert_eq!(conn.deprecate_eof(), deprecate_eof);
        // Guards against a client that waits forever; not a timing assertion.
        let got = tokio::time::timeout(
            Duration::from_secs(10),
            conn.query_rows("SHOW REPLICA STATUS"),
        )
        .await
        .expect("query_rows hung")
        .expect("read")
        .expect("rows");
        assert_eq!(got.columns, columns);
        let want: Vec<Vec<Option<String>>> = rows
            .iter()
            .map(|r| r.iter().map(|v| v.map(str::to_string)).collect())
            .collect();
        assert_eq!(got.rows, want);
        let e = tokio::time::timeout(
            Duration::from_secs(10),
            conn.query_rows("SHOW REPLICA STATUS"),
        )
        .await
        .expect("query_rows hung")
        .expect("read")
        .expect_err("the server's error");
        assert_eq!(e.code(), 1064);
        if let Err(e) = server.await {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}
