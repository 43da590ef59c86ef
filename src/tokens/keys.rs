//! Asymmetric signing keys for access tokens, and their encryption at rest.
//!
//! Private keys are stored sealed with XChaCha20-Poly1305 under a key derived
//! (HKDF-SHA256) from `FLAGPOLE_SECRET_KEY`, so a copy of the database alone
//! cannot mint tokens. Public keys are kept as JWKs for the JWKS document.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};

crate::text_enum! {
    /// The signature algorithms an environment can sign with.
    pub enum SigningAlgorithm {
        Es256 = "ES256",
        Rs256 = "RS256",
        EdDsa = "EdDSA",
    }
}

impl SigningAlgorithm {
    pub fn jwt_algorithm(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Es256 => jsonwebtoken::Algorithm::ES256,
            Self::Rs256 => jsonwebtoken::Algorithm::RS256,
            Self::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

/// A freshly generated key pair: the private key as DER (PKCS#8 for EC and
/// Ed25519, PKCS#1 for RSA, as the JWT library reads them) and the public JWK.
pub struct GeneratedKey {
    pub kid: String,
    pub algorithm: SigningAlgorithm,
    pub private_der: Vec<u8>,
    pub public_jwk: serde_json::Value,
}

pub fn generate(algorithm: SigningAlgorithm) -> anyhow::Result<GeneratedKey> {
    let kid = crate::ids::random_token(12);
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let (private_der, mut jwk) = match algorithm {
        SigningAlgorithm::Es256 => {
            use p256::elliptic_curve::sec1::ToEncodedPoint;
            use p256::pkcs8::EncodePrivateKey;
            let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
            let der = secret
                .to_pkcs8_der()
                .map_err(|e| anyhow::anyhow!("encoding an EC key: {e}"))?;
            let point = secret.public_key().to_encoded_point(false);
            let (x, y) = (
                point
                    .x()
                    .ok_or_else(|| anyhow::anyhow!("EC point without x"))?,
                point
                    .y()
                    .ok_or_else(|| anyhow::anyhow!("EC point without y"))?,
            );
            (
                der.as_bytes().to_vec(),
                json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)}),
            )
        }
        SigningAlgorithm::Rs256 => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            use rsa::traits::PublicKeyParts;
            let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)?;
            let der = private
                .to_pkcs1_der()
                .map_err(|e| anyhow::anyhow!("encoding an RSA key: {e}"))?;
            let public = private.to_public_key();
            let certificate = self_signed_certificate(&private, &kid)?;
            (
                der.as_bytes().to_vec(),
                json!({
                    "kty": "RSA",
                    "n": b64(&public.n().to_bytes_be()),
                    "e": b64(&public.e().to_bytes_be()),
                    "x5c": [STANDARD.encode(&certificate)],
                    "x5t#S256": b64(&Sha256::digest(&certificate)),
                }),
            )
        }
        SigningAlgorithm::EdDsa => {
            use ed25519_dalek::pkcs8::EncodePrivateKey;
            let signing = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            let der = signing
                .to_pkcs8_der()
                .map_err(|e| anyhow::anyhow!("encoding an Ed25519 key: {e}"))?;
            (
                der.as_bytes().to_vec(),
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(signing.verifying_key().as_bytes())}),
            )
        }
    };
    jwk["kid"] = json!(kid);
    jwk["alg"] = json!(algorithm.as_str());
    jwk["use"] = json!("sig");
    Ok(GeneratedKey {
        kid,
        algorithm,
        private_der,
        public_jwk: jwk,
    })
}

/// A self-signed X.509 certificate (DER) of an RSA key, for the JWK's
/// `x5c`: WorkOS publishes one with every key, and its SDKs' key models
/// require the field.
fn self_signed_certificate(private: &rsa::RsaPrivateKey, kid: &str) -> anyhow::Result<Vec<u8>> {
    use rsa::pkcs8::EncodePrivateKey;
    let pkcs8 = private
        .to_pkcs8_der()
        .map_err(|e| anyhow::anyhow!("encoding an RSA key: {e}"))?;
    let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.as_bytes()),
        &rcgen::PKCS_RSA_SHA256,
    )?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("Flagpole signing key {kid}"),
    );
    Ok(params.self_signed(&key)?.der().to_vec())
}

/// Seals and opens secrets stored in the database.
#[derive(Clone)]
pub struct KeySealer {
    cipher: XChaCha20Poly1305,
}

impl KeySealer {
    /// Derives the sealing key from the service's secret key.
    pub fn new(secret_key: &[u8]) -> Self {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"flagpole"), secret_key);
        let mut key = [0u8; 32];
        hk.expand(b"signing keys at rest v1", &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        KeySealer {
            cipher: XChaCha20Poly1305::new((&key).into()),
        }
    }

    /// Base64 of nonce ‖ ciphertext; `context` (the key id) is bound as associated data.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> anyhow::Result<String> {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(STANDARD.encode(out))
    }

    pub fn open(&self, sealed: &str, context: &str) -> anyhow::Result<Vec<u8>> {
        let bytes = STANDARD.decode(sealed)?;
        if bytes.len() < 24 + 16 {
            anyhow::bail!("sealed value too short");
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| {
                anyhow::anyhow!(
                    "cannot decrypt a signing key: FLAGPOLE_SECRET_KEY differs from the one it was stored with"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_the_same_secret_and_context() {
        let sealer = KeySealer::new(&[1u8; 32]);
        let sealed = sealer.seal(b"private", "kid1").unwrap();
        assert_eq!(sealer.open(&sealed, "kid1").unwrap(), b"private");
        assert!(sealer.open(&sealed, "kid2").is_err());
        assert!(KeySealer::new(&[2u8; 32]).open(&sealed, "kid1").is_err());
    }

    #[test]
    fn every_algorithm_signs_tokens_its_jwk_verifies() {
        for &algorithm in SigningAlgorithm::ALL {
            let key = generate(algorithm).unwrap();
            let signer =
                crate::tokens::signing::Signer::new(key.kid.clone(), algorithm, &key.private_der)
                    .unwrap();
            let claims = json!({"sub": "user_1", "exp": 4_000_000_000u64});
            let token = signer.sign(&claims).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
            assert_eq!(header.alg, algorithm.jwt_algorithm());
            let jwk: jsonwebtoken::jwk::Jwk =
                serde_json::from_value(key.public_jwk.clone()).unwrap();
            let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
            let validation = jsonwebtoken::Validation::new(algorithm.jwt_algorithm());
            let data =
                jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).unwrap();
            assert_eq!(data.claims["sub"], "user_1", "{algorithm:?}");
        }
    }
}
