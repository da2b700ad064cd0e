import LoopHTTP
