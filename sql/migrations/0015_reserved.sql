-- 0015: reserved for the rotation branch's migration (issue 13; migrations run 1..N without
-- gaps). This placeholder changes nothing; it is replaced by that branch's 0015 at merge.
SELECT 1;
