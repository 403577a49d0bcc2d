// Stand-in for gloo/rendezvous/store.h: see gloo/forward.h for why.
#pragma once
#include <gloo/forward.h>
