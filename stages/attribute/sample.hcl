stage "attribute" {
  # Resolve the uid in <name>._.<uid> container names through the passwd
  # database (NSS). Set to false where LDAP or SSSD is slow or unreachable.
  passwd_lookup = true
}
