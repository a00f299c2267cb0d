"""Reductions: sum/mean/prod/amax/amin/max/min/argmax/argmin/std/var/norm/logsumexp/all/any, keepdim."""
