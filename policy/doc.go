// Package policy is the DS01 limits model, read natively from DS01's own files
// so that a DS01 host needs no second copy of its limits. It is pure: it reads
// files and answers questions, and never talks to Docker.
//
// # Files
//
// Load reads, with every duration validated up front:
//
//   - resource-limits.yaml: defaults, default_group (student if unset),
//     groups (in file order, with inline members lists), the inline
//     user_overrides section, policies, container_types and
//     monitoring.infrastructure_containers. Other sections are not read;
//     keys without a unit suffix (max_cpus, memory, aggregate, ...) are
//     skipped.
//   - groups/<group>.members, only for groups that are keys under groups:,
//     one name a line, "#" comments, blank lines skipped. A group's members
//     are the file's plus its inline members list.
//   - user-overrides.yaml: user -> limits. An entry here replaces the inline
//     user_overrides entry for that user as a whole.
//   - lifecycle-exemptions.yaml: an exemptions list.
//
// A duration's unit is its key's suffix (_h, _m, _s) and its value a bare
// number (see ParseDuration). null and the words null, none, never and
// indefinite mean "no limit" (Limit.Unlimited); 0 and negative values mean
// "act at the next run". An empty or comment-only file is an empty config;
// null where a mapping belongs counts as an empty mapping.
//
// # Resolution
//
// A user's limits are those of DS01's get_resource_limits.py: an override
// entry (by name, then by Sanitize(name)) over defaults, with no group layer;
// else the first group in file order listing the user (or the sanitised name)
// over defaults; else the default group over defaults. A key missing from a
// layer falls through; a key set to null is "no limit". An exited container
// whose owner is unknown gets the strictest applicable hold: its type's
// container_types entry, else container_types.unknown, else defaults, else
// 30m. Every Limit carries its Source, for the verdict's "rule".
//
// # Where this differs from DS01, on purpose
//
//   - created_container_timeout_m: null means no limit. DS01 turned null into
//     -1 s and so removed every created container at the next run.
//   - A duration that is not a number, null or a no-limit word ("24h", "abc",
//     true, a mapping) is a load error naming file and line. DS01 read it as
//     0, which for a hold removes at the next run and for an idle timeout or
//     max runtime means no limit. A quoted number ("0.5") is still read as the
//     number, as DS01 did. Values are exact decimals truncated toward zero to
//     whole seconds, without DS01's float rounding noise.
//   - 0 is a zero duration everywhere ("act at the next run"), never "no
//     limit"; DS01's release-stale read gpu_hold_after_stop_h: 0 as forever
//     and -1 as one hour (B-14).
//   - A members file that exists but cannot be read is a load error. DS01 read
//     it as empty, which silently moved every member to the default group and
//     its shorter holds.
//   - expires_on may be an unquoted YAML date or timestamp, or an ISO string
//     with Z, with an offset or with neither (then UTC). A plain date holds
//     through that whole day in UTC: it expires at the start of the next day.
//     DS01 accepted only quoted strings with Z or an offset and otherwise
//     ignored every exemption of that lookup (B-17). An expires_on that cannot
//     be read, and an entry without a username, are load errors.
//   - A key written twice in one mapping is a load error; PyYAML kept the last.
//   - A file that exists but cannot be read (user-overrides.yaml,
//     lifecycle-exemptions.yaml) is a load error; DS01 treated a permission
//     error as "no overrides".
//
// With Files.LimitsFile empty, Load starts from Default, DS01's built-in
// values, and GroupsDir is not read (Default has no groups).
//
// A Model never changes after Load, so it is safe for concurrent use.
package policy
