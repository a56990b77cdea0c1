//! Signing and key loading implementations using aws-lc-rs.

use std::str;

use aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA384_ASN1};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, UnparsedPublicKey};
use aws_lc_rs::signature::{ECDSA_P384_SHA256_ASN1, ECDSA_P384_SHA384_ASN1};
use aws_lc_rs::signature::{EcdsaKeyPair, EcdsaSigningAlgorithm, EcdsaVerificationAlgorithm};
use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_2048_8192_SHA384};
use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA512, RsaParameters};
use der::{Decode, Encode};
use spki::ObjectIdentifier;
use x509_cert::Certificate as X509Certificate;

use super::super::{KeyProvider, SignatureVerifier, SigningKey, check_verify_scheme};
use super::super::{OID_P256, OID_P384};
use crate::buffer::Buf;
use crate::types::{HashAlgorithm, NamedGroup, SignatureAlgorithm};
use crate::{CryptoError, CryptoOperation};

/// ECDSA signing key implementation.
struct EcdsaSigningKey {
    key_pair: EcdsaKeyPair,
    signing_algorithm: &'static EcdsaSigningAlgorithm,
}

impl std::fmt::Debug for EcdsaSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcdsaSigningKey")
            .field("signing_algorithm", &self.signing_algorithm)
            .finish()
    }
}

impl SigningKey for EcdsaSigningKey {
    fn sign(
        &mut self,
        data: &[u8],
        hash_alg: HashAlgorithm,
        buf: &mut Buf,
    ) -> Result<(), CryptoError> {
        let key_hash = self.hash_algorithm();
        if hash_alg != key_hash {
            return Err(CryptoError::SigningKeyHashMismatch {
                key_hash,
                requested: hash_alg,
            });
        }
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let signature = self
            .key_pair
            .sign(&rng, data)
            .map_err(|_| CryptoError::OperationFailed(CryptoOperation::Sign))?;
        buf.clear();
        buf.extend_from_slice(signature.as_ref());
        Ok(())
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }

    fn hash_algorithm(&self) -> HashAlgorithm {
        if self.signing_algorithm == &ECDSA_P256_SHA256_ASN1_SIGNING {
            HashAlgorithm::SHA256
        } else if self.signing_algorithm == &ECDSA_P384_SHA384_ASN1_SIGNING {
            HashAlgorithm::SHA384
        } else {
            panic!("Unsupported signing algorithm")
        }
    }

    fn supported_hash_algorithms(&self) -> &[HashAlgorithm] {
        // aws-lc-rs locks the hash at key-load time; only one is supported.
        if self.signing_algorithm == &ECDSA_P256_SHA256_ASN1_SIGNING {
            &[HashAlgorithm::SHA256]
        } else if self.signing_algorithm == &ECDSA_P384_SHA384_ASN1_SIGNING {
            &[HashAlgorithm::SHA384]
        } else {
            panic!("Unsupported signing algorithm")
        }
    }
}

/// Key provider implementation.
#[derive(Debug)]
pub(super) struct AwsLcKeyProvider;

impl KeyProvider for AwsLcKeyProvider {
    fn load_private_key(&self, key_der: &[u8]) -> Result<Box<dyn SigningKey>, CryptoError> {
        // Try PKCS#8 DER format first (most common)
        if let Ok(key_pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, key_der) {
            return Ok(Box::new(EcdsaSigningKey {
                key_pair,
                signing_algorithm: &ECDSA_P256_SHA256_ASN1_SIGNING,
            }));
        }
        if let Ok(key_pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, key_der) {
            return Ok(Box::new(EcdsaSigningKey {
                key_pair,
                signing_algorithm: &ECDSA_P384_SHA384_ASN1_SIGNING,
            }));
        }

        // Try parsing as SEC1 DER format (OpenSSL EC private key format)
        if let Ok(ec_key) = sec1::EcPrivateKey::try_from(key_der) {
            let private_key_len = ec_key.private_key.len();

            let curve_oid = if let Some(params) = &ec_key.parameters {
                match params {
                    sec1::EcParameters::NamedCurve(oid) => Some(*oid),
                }
            } else if private_key_len == 32 {
                Some(ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7")) // P-256
            } else if private_key_len == 48 {
                Some(ObjectIdentifier::new_unwrap("1.3.132.0.34")) // P-384
            } else {
                None
            };

            if let Some(curve_oid) = curve_oid {
                let ec_alg_oid = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
                let curve_params_der = curve_oid
                    .to_der()
                    .map_err(|_| CryptoError::OperationFailed(CryptoOperation::EncodeKey))?;
                let curve_params_any = der::asn1::AnyRef::try_from(curve_params_der.as_slice())
                    .map_err(|_| CryptoError::OperationFailed(CryptoOperation::EncodeKey))?;

                let algorithm = spki::AlgorithmIdentifierRef {
                    oid: ec_alg_oid,
                    parameters: Some(curve_params_any),
                };

                let private_key = der::asn1::OctetStringRef::new(key_der)
                    .map_err(|_| CryptoError::OperationFailed(CryptoOperation::EncodeKey))?;
                let pkcs8 = pkcs8::PrivateKeyInfoRef {
                    algorithm,
                    private_key,
                    public_key: None,
                };

                let pkcs8_der = pkcs8
                    .to_der()
                    .map_err(|_| CryptoError::OperationFailed(CryptoOperation::EncodeKey))?;

                let p256_curve = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
                if curve_oid == p256_curve
                    && let Ok(key_pair) =
                        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8_der)
                {
                    return Ok(Box::new(EcdsaSigningKey {
                        key_pair,
                        signing_algorithm: &ECDSA_P256_SHA256_ASN1_SIGNING,
                    }));
                }

                let p384_curve = ObjectIdentifier::new_unwrap("1.3.132.0.34");
                if curve_oid == p384_curve
                    && let Ok(key_pair) =
                        EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, &pkcs8_der)
                {
                    return Ok(Box::new(EcdsaSigningKey {
                        key_pair,
                        signing_algorithm: &ECDSA_P384_SHA384_ASN1_SIGNING,
                    }));
                }
            }
        }

        // Check if it's a PEM encoded key
        if let Ok(pem_str) = str::from_utf8(key_der)
            && pem_str.contains("-----BEGIN")
            && let Ok((_label, doc)) = pkcs8::Document::from_pem(pem_str)
        {
            return self.load_private_key(doc.as_bytes());
        }

        Err(CryptoError::InvalidPrivateKey)
    }
}

/// Signature verifier implementation.
#[derive(Debug)]
pub(super) struct AwsLcSignatureVerifier;

impl SignatureVerifier for AwsLcSignatureVerifier {
    fn verify_signature(
        &self,
        cert_der: &[u8],
        data: &[u8],
        signature: &[u8],
        hash_alg: HashAlgorithm,
        sig_alg: SignatureAlgorithm,
    ) -> Result<(), CryptoError> {
        if sig_alg != SignatureAlgorithm::ECDSA && sig_alg != SignatureAlgorithm::RSA {
            return Err(CryptoError::UnsupportedSignatureAlgorithm(sig_alg));
        }

        let cert =
            X509Certificate::from_der(cert_der).map_err(|_| CryptoError::CertificateParseFailed)?;
        let spki = cert.tbs_certificate().subject_public_key_info();

        if sig_alg == SignatureAlgorithm::RSA {
            return verify_rsa_pkcs1(spki, data, signature, hash_alg);
        }

        const OID_EC_PUBLIC_KEY: ObjectIdentifier =
            ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

        if spki.algorithm.oid != OID_EC_PUBLIC_KEY {
            return Err(CryptoError::UnsupportedPublicKeyAlgorithm);
        }

        let pubkey_bytes = spki
            .subject_public_key
            .as_bytes()
            .ok_or(CryptoError::InvalidSubjectPublicKey)?;

        let curve_oid: ObjectIdentifier = spki
            .algorithm
            .parameters
            .as_ref()
            .ok_or(CryptoError::MissingEcCurveParameter)?
            .decode_as()
            .map_err(|_| CryptoError::InvalidEcCurveParameter)?;

        let group = match curve_oid {
            OID_P256 => NamedGroup::Secp256r1,
            OID_P384 => NamedGroup::Secp384r1,
            _ => return Err(CryptoError::UnsupportedEcCurve),
        };

        check_verify_scheme(sig_alg, hash_alg, group)?;

        let algorithm: &EcdsaVerificationAlgorithm = match (group, hash_alg) {
            (NamedGroup::Secp256r1, HashAlgorithm::SHA256) => &ECDSA_P256_SHA256_ASN1,
            (NamedGroup::Secp256r1, HashAlgorithm::SHA384) => &ECDSA_P256_SHA384_ASN1,
            (NamedGroup::Secp384r1, HashAlgorithm::SHA256) => &ECDSA_P384_SHA256_ASN1,
            (NamedGroup::Secp384r1, HashAlgorithm::SHA384) => &ECDSA_P384_SHA384_ASN1,
            // unreachable: check_verify_scheme already validated
            _ => unreachable!(),
        };

        let public_key = UnparsedPublicKey::new(algorithm, pubkey_bytes);
        public_key
            .verify(data, signature)
            .map_err(|_| CryptoError::SignatureVerificationFailed {
                signature: sig_alg,
                hash: hash_alg,
                group,
            })
    }
}

/// DTLS 1.2 `rsa_pkcs1_*` (the TLS 1.2 meaning of `SignatureAlgorithm::RSA`): a peer whose
/// certificate holds an RSA key (`rsaEncryption`), as OpenSSL-based peers such as GStreamer's
/// webrtcbin present. DTLS 1.3 never gets here with RSA: it offers ECDSA schemes only.
fn verify_rsa_pkcs1(
    key_info: &spki::SubjectPublicKeyInfoOwned,
    data: &[u8],
    signature: &[u8],
    hash_alg: HashAlgorithm,
) -> Result<(), CryptoError> {
    const OID_RSA_ENCRYPTION: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

    if key_info.algorithm.oid != OID_RSA_ENCRYPTION {
        return Err(CryptoError::UnsupportedPublicKeyAlgorithm);
    }
    // The BIT STRING of an rsaEncryption key is the DER RSAPublicKey aws-lc-rs expects.
    let pubkey_bytes = key_info
        .subject_public_key
        .as_bytes()
        .ok_or(CryptoError::InvalidSubjectPublicKey)?;

    let algorithm: &'static RsaParameters = match hash_alg {
        HashAlgorithm::SHA256 => &RSA_PKCS1_2048_8192_SHA256,
        HashAlgorithm::SHA384 => &RSA_PKCS1_2048_8192_SHA384,
        HashAlgorithm::SHA512 => &RSA_PKCS1_2048_8192_SHA512,
        _ => {
            return Err(CryptoError::UnsupportedSignaturePair {
                signature: SignatureAlgorithm::RSA,
                hash: hash_alg,
            });
        }
    };

    UnparsedPublicKey::new(algorithm, pubkey_bytes)
        .verify(data, signature)
        .map_err(|_| CryptoError::RsaSignatureVerificationFailed { hash: hash_alg })
}

/// Static instance of the key provider.
pub(super) static KEY_PROVIDER: AwsLcKeyProvider = AwsLcKeyProvider;

/// Static instance of the signature verifier.
pub(super) static SIGNATURE_VERIFIER: AwsLcSignatureVerifier = AwsLcSignatureVerifier;

#[cfg(all(test, feature = "rcgen"))]
mod tests {
    use super::*;
    use crate::certificate::generate_self_signed_certificate;
    use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RSA_PKCS1_SHA512, RsaEncoding, RsaKeyPair};

    /// A self-signed RSA-2048 certificate (what OpenSSL peers present) and its key pair.
    fn rsa_certificate() -> (Vec<u8>, RsaKeyPair) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
        let params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        let cert = params.self_signed(&key).expect("self-signed");
        let key_pair = RsaKeyPair::from_pkcs8(&key.serialize_der()).expect("PKCS#8 RSA key");
        (cert.der().to_vec(), key_pair)
    }

    fn rsa_sign(key: &RsaKeyPair, encoding: &'static dyn RsaEncoding, data: &[u8]) -> Vec<u8> {
        let mut signature = vec![0; key.public_modulus_len()];
        key.sign(
            encoding,
            &aws_lc_rs::rand::SystemRandom::new(),
            data,
            &mut signature,
        )
        .expect("RSA sign");
        signature
    }

    #[test]
    fn rsa_pkcs1_signatures_verify_against_an_rsa_certificate() {
        let (cert, key) = rsa_certificate();
        let data = b"handshake transcript";

        for (encoding, hash) in [
            (
                &RSA_PKCS1_SHA256 as &'static dyn RsaEncoding,
                HashAlgorithm::SHA256,
            ),
            (&RSA_PKCS1_SHA512, HashAlgorithm::SHA512),
        ] {
            let mut signature = rsa_sign(&key, encoding, data);
            SIGNATURE_VERIFIER
                .verify_signature(&cert, data, &signature, hash, SignatureAlgorithm::RSA)
                .expect("valid RSA signature verifies");

            signature[10] ^= 0x01;
            let err = SIGNATURE_VERIFIER
                .verify_signature(&cert, data, &signature, hash, SignatureAlgorithm::RSA)
                .expect_err("corrupt RSA signature must fail");
            assert_eq!(err, CryptoError::RsaSignatureVerificationFailed { hash });
        }
    }

    #[test]
    fn rsa_signature_with_the_wrong_hash_or_key_type_fails() {
        let (cert, key) = rsa_certificate();
        let data = b"handshake transcript";
        let signature = rsa_sign(&key, &RSA_PKCS1_SHA256, data);

        // Signed with SHA-256, claimed SHA-384.
        assert_eq!(
            SIGNATURE_VERIFIER.verify_signature(
                &cert,
                data,
                &signature,
                HashAlgorithm::SHA384,
                SignatureAlgorithm::RSA
            ),
            Err(CryptoError::RsaSignatureVerificationFailed {
                hash: HashAlgorithm::SHA384
            })
        );
        // SHA-1 is not accepted.
        assert!(matches!(
            SIGNATURE_VERIFIER.verify_signature(
                &cert,
                data,
                &signature,
                HashAlgorithm::SHA1,
                SignatureAlgorithm::RSA
            ),
            Err(CryptoError::UnsupportedSignaturePair { .. })
        ));
        // An RSA signature claimed for an ECDSA certificate.
        let ecdsa = generate_self_signed_certificate().expect("generate cert");
        assert_eq!(
            SIGNATURE_VERIFIER.verify_signature(
                &ecdsa.certificate,
                data,
                &signature,
                HashAlgorithm::SHA256,
                SignatureAlgorithm::RSA
            ),
            Err(CryptoError::UnsupportedPublicKeyAlgorithm)
        );
        // An ECDSA signature claimed for an RSA certificate.
        assert_eq!(
            SIGNATURE_VERIFIER.verify_signature(
                &cert,
                data,
                &signature,
                HashAlgorithm::SHA256,
                SignatureAlgorithm::ECDSA
            ),
            Err(CryptoError::UnsupportedPublicKeyAlgorithm)
        );
    }

    #[test]
    fn invalid_signature_returns_structured_verification_error() {
        let cert = generate_self_signed_certificate().expect("generate cert");
        let mut key = KEY_PROVIDER
            .load_private_key(&cert.private_key)
            .expect("load private key");
        let data = b"signed data";
        let mut signature = Buf::new();
        key.sign(data, HashAlgorithm::SHA256, &mut signature)
            .expect("sign data");

        let last = signature.len() - 1;
        signature[last] ^= 0x01;

        let err = SIGNATURE_VERIFIER
            .verify_signature(
                &cert.certificate,
                data,
                &signature,
                HashAlgorithm::SHA256,
                SignatureAlgorithm::ECDSA,
            )
            .expect_err("corrupt signature should fail");

        assert_eq!(
            err,
            CryptoError::SignatureVerificationFailed {
                signature: SignatureAlgorithm::ECDSA,
                hash: HashAlgorithm::SHA256,
                group: NamedGroup::Secp256r1,
            }
        );
    }
}
