/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Tattle's decision core, shared by the lsm and cgroup backends: the include of its parts, one concern each.
 *
 *   maps.h      the maps the decision works on and the records they hold (one layout for both backends)
 *   identity.h  who makes an attempt: executable and uid, with scripts and AppImages told apart
 *   path.h      the dentry walk that names an executable or a directory
 *   decision.h  the flow, its cached verdict, the rule walk, and the events to the helper
 *   mark.h      the mark of an undecided socket
 *   records.h   what a let-through attempt leaves for the DNS capture (dns.c) and the traffic counters (traffic.c)
 *
 * process.h, the exec and fork hooks that keep the scripts' map, is built into both backends beside it.
 */
#ifndef TATTLE_CORE_H
#define TATTLE_CORE_H

#include "maps.h"
#include "identity.h"
#include "path.h"
#include "decision.h"
#include "mark.h"
#include "records.h"

#endif
