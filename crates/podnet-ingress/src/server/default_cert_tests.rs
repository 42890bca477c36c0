/// Issue 21, item 10: the default certificate's subject was rcgen's own ("CN=rcgen self
/// signed cert"); the documentation says `CN=podnet-ingress-default`.
#[test]
fn the_default_certificate_is_cn_podnet_ingress_default() {
    let (pem, _) = super::default_certificate_pem().unwrap();
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    // The subject's CN attribute: OID 2.5.4.3, then a UTF8String of the name.
    let name = super::DEFAULT_CERT_NAME.as_bytes();
    let mut cn = vec![0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, name.len() as u8];
    cn.extend_from_slice(name);
    assert!(
        der.windows(cn.len()).any(|w| w == cn.as_slice()),
        "no CN={}",
        super::DEFAULT_CERT_NAME
    );
    assert!(
        !der.windows(5).any(|w| w == b"rcgen"),
        "rcgen's default subject"
    );
}
